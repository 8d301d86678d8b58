/* tasks.h - the training tasks of ssm-train: synthetic ones generated from a seed and data sets
 * read from files.  Every example is a pure function of (seed, split, example number), so a run
 * is reproducible and --resume continues exactly.
 *
 *   selective-copy  (Mamba paper, section 4.1.1): a sequence of seq_len tokens that is blank (0)
 *                   except for copy_tokens data tokens (1 .. vocab-2) at random positions, then
 *                   copy_tokens marker tokens (vocab-1); at each marker position the target is the
 *                   next data token in order.  Length seq_len + copy_tokens; targets elsewhere -1.
 *   induction       random tokens in 0 .. vocab-2; the trigger (vocab-1) appears once at a random
 *                   position followed by a key token, and again at the last position, where the
 *                   target is the key.  Length seq_len.
 *   fmnist, fmnist-permuted
 *                   Fashion-MNIST (Debian's dataset-fashion-mnist IDX files) as 784 pixels one at
 *                   a time (features (784, 1), scaled to zero mean / unit variance), 10 classes.
 *                   The permuted variant applies one fixed permutation (seed 1234) to the pixels.
 *                   Train: the 60000 training images; eval: the 10000 test images.
 *   text FILE       byte-level language modelling: vocab 256, windows of seq_len bytes predicting
 *                   the next byte; train on the first 90% of the file, eval on the rest.
 *   stream FILE     a tensor stream with `x` (count, L) i32 tokens or (count, L, F) f32 features
 *                   and `y` (count) i32 class ids or (count, L) i32 per-token targets (-1 ignored);
 *                   the last 10% of the examples are the eval split.
 */
#ifndef SSM_TASKS_H
#define SSM_TASKS_H

#include <stdint.h>

typedef struct {
    int seq_len;          /* 0 = the task's default */
    int copy_tokens;      /* selective-copy */
    int vocab;            /* selective-copy, induction */
    const char *file;     /* text, stream */
    const char *data_dir; /* fmnist: where the IDX files are (default the Debian path) */
} ssm_task_options;

typedef struct ssm_task ssm_task;

ssm_task *ssm_task_open(const char *name, const ssm_task_options *o);   /* dies on errors */
void ssm_task_free(ssm_task *t);

const char *ssm_task_name(const ssm_task *t);
int ssm_task_vocab(const ssm_task *t);       /* > 0: token input */
int ssm_task_d_input(const ssm_task *t);     /* features per step when vocab == 0 */
int ssm_task_classes(const ssm_task *t);     /* > 0: one class per sequence; 0: per-token targets */
int ssm_task_out_vocab(const ssm_task *t);   /* per-token output size */
int ssm_task_length(const ssm_task *t);      /* L */
int64_t ssm_task_train_size(const ssm_task *t);   /* examples in an epoch; 0 = unlimited */
int64_t ssm_task_eval_size(const ssm_task *t);    /* eval examples (fixed) */
/* Fills examples first .. first+count-1 of a split (0 train, 1 eval): tokens (count, L) or
 * features (count, L, d_input) (the other may be NULL), targets (count, L) or (count).
 * Training examples walk through an epoch-wise shuffle of the data sets. */
void ssm_task_examples(ssm_task *t, int split, uint64_t seed, int64_t first, int count,
                       int32_t *tokens, float *features, int32_t *targets);
/* A line describing the task's parameters, stored in checkpoints ("seq_len=256 copy_tokens=16"). */
void ssm_task_describe(const ssm_task *t, char *buf, int n);

#endif
