/* test_tasks.c - the tasks' examples have the structure the task promises (checked element by
 * element from the definition), are pure functions of (seed, split, index), and the data sets are
 * read whole (Fashion-MNIST: 60000 + 10000 images, labels 0..9, balanced). */
#include "check.h"
#include "tasks.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_selective_copy(void) {
    ssm_task_options o = {.seq_len = 37, .copy_tokens = 5, .vocab = 7};
    ssm_task *t = ssm_task_open("selective-copy", &o);
    int L = ssm_task_length(t);
    CHECK(L == 42, "length %d", L);
    int n = 50;
    int32_t *tok = malloc(n * L * sizeof(int32_t)), *tgt = malloc(n * L * sizeof(int32_t));
    int32_t *tok2 = malloc(n * L * sizeof(int32_t)), *tgt2 = malloc(n * L * sizeof(int32_t));
    ssm_task_examples(t, 0, 9, 100, n, tok, NULL, tgt);
    int ok = 1, first_pos_spread = 0;
    for (int i = 0; i < n; i++) {
        const int32_t *x = tok + i * L, *y = tgt + i * L;
        int32_t data[5];
        int k = 0;
        for (int j = 0; j < 37; j++) {
            ok &= y[j] == -1;
            if (x[j] != 0) { ok &= x[j] >= 1 && x[j] <= 5 && k < 5; if (k < 5) data[k] = x[j]; k++; if (k == 1 && j > 5) first_pos_spread = 1; }
        }
        ok &= k == 5;
        for (int j = 0; j < 5; j++) ok &= x[37 + j] == 6 && y[37 + j] == data[j];
    }
    CHECK(ok, "selective-copy: 5 data tokens among blanks, then 5 markers whose targets are the data in order");
    CHECK(first_pos_spread, "selective-copy: data positions vary");
    /* a pure function of (seed, split, index): the same examples one at a time */
    for (int i = 0; i < n; i++) ssm_task_examples(t, 0, 9, 100 + i, 1, tok2 + i * L, NULL, tgt2 + i * L);
    CHECK(memcmp(tok, tok2, n * L * sizeof(int32_t)) == 0 && memcmp(tgt, tgt2, n * L * sizeof(int32_t)) == 0,
          "examples do not depend on how they are batched");
    ssm_task_examples(t, 1, 9, 100, n, tok2, NULL, tgt2);
    CHECK(memcmp(tok, tok2, n * L * sizeof(int32_t)) != 0, "the eval split differs from the train split");
    ssm_task_examples(t, 0, 10, 100, n, tok2, NULL, tgt2);
    CHECK(memcmp(tok, tok2, n * L * sizeof(int32_t)) != 0, "another seed gives other examples");
    free(tok); free(tgt); free(tok2); free(tgt2);
    ssm_task_free(t);
}

static void test_induction(void) {
    ssm_task_options o = {.seq_len = 30, .vocab = 9};
    ssm_task *t = ssm_task_open("induction", &o);
    int L = ssm_task_length(t), n = 40, ok = 1;
    int32_t *tok = malloc(n * L * sizeof(int32_t)), *tgt = malloc(n * L * sizeof(int32_t));
    ssm_task_examples(t, 0, 3, 0, n, tok, NULL, tgt);
    for (int i = 0; i < n; i++) {
        const int32_t *x = tok + i * L, *y = tgt + i * L;
        int triggers = 0, key = -1;
        for (int j = 0; j < L - 1; j++) {
            ok &= y[j] == -1 && x[j] >= 0 && x[j] <= 8;
            if (x[j] == 8) { triggers++; key = x[j + 1]; }
        }
        ok &= triggers == 1 && x[L - 1] == 8 && y[L - 1] == key && key >= 0 && key < 8;
    }
    CHECK(ok, "induction: one trigger + key inside, the trigger at the end, target the key");
    free(tok); free(tgt);
    ssm_task_free(t);
}

static void test_fmnist(void) {
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0) {
        CHECK(0, "Fashion-MNIST is not installed (Debian package dataset-fashion-mnist, in scripts/deps.txt)");
        return;
    }
    ssm_task_options o = {0};
    ssm_task *t = ssm_task_open("fmnist", &o);
    CHECK(ssm_task_train_size(t) == 60000 && ssm_task_eval_size(t) == 10000, "60000 + 10000 images");
    CHECK(ssm_task_length(t) == 784 && ssm_task_d_input(t) == 1 && ssm_task_classes(t) == 10, "784 pixels, 10 classes");
    int n = 1000;
    float *f = malloc((size_t)n * 784 * sizeof(float));
    int32_t *y = malloc((size_t)n * 784 * sizeof(int32_t));
    int counts[10] = {0};
    ssm_task_examples(t, 1, 1, 0, n, NULL, f, y);
    double mean = 0;
    for (int i = 0; i < n; i++) { CHECK(y[i] >= 0 && y[i] < 10, "label"); if (y[i] >= 0 && y[i] < 10) counts[y[i]]++; }
    for (int64_t i = 0; i < (int64_t)n * 784; i++) mean += f[i];
    mean /= (double)n * 784;
    int balanced = 1;
    for (int c = 0; c < 10; c++) balanced &= counts[c] > 60 && counts[c] < 140;
    CHECK(balanced, "test labels roughly balanced");
    CHECK(fabs(mean) < 0.1, "normalized pixels have mean ~0 (got %g)", mean);
    /* permuted: the same multiset of pixels per image */
    ssm_task *tp = ssm_task_open("fmnist-permuted", &o);
    float *fp = malloc(784 * sizeof(float));
    ssm_task_examples(tp, 1, 1, 0, 1, NULL, fp, y);
    double s1 = 0, s2 = 0;
    int same_order = 1;
    for (int j = 0; j < 784; j++) { s1 += f[j]; s2 += fp[j]; same_order &= f[j] == fp[j]; }
    CHECK(fabs(s1 - s2) < 1e-3 && !same_order, "fmnist-permuted permutes the pixels of the same image");
    free(f); free(y); free(fp);
    ssm_task_free(t);
    ssm_task_free(tp);
}

static void test_text(void) {
    char path[] = "/tmp/ssm_text_XXXXXX";
    int fd = mkstemp(path);
    char buf[5000];
    for (int i = 0; i < 5000; i++) buf[i] = (char)('a' + i % 26);
    CHECK(write(fd, buf, sizeof buf) == (ssize_t)sizeof buf, "write");
    close(fd);
    ssm_task_options o = {.seq_len = 50, .file = path};
    ssm_task *t = ssm_task_open("text", &o);
    int32_t tok[3 * 50], tgt[3 * 50];
    ssm_task_examples(t, 0, 1, 0, 3, tok, NULL, tgt);
    int ok = 1;
    for (int j = 0; j < 150; j++) ok &= tgt[j] == 'a' + (tok[j] - 'a' + 1) % 26;
    CHECK(ok, "text: the target of each byte is the next byte");
    CHECK(ssm_task_eval_size(t) == 500 / 51, "eval windows cover the last 10%%");
    ssm_task_free(t);
    unlink(path);
}

int main(void) {
    test_seed_from_env("test_tasks");
    test_selective_copy();
    test_induction();
    test_fmnist();
    test_text();
    return check_summary("test_tasks");
}
