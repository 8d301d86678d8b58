/* ssm-train - train S4D and Mamba models on synthetic tasks, Fashion-MNIST, text or a tensor
 * stream, with checkpoints every other tool reads.  Only wiring lives here: the models are
 * libcommon/model_{mamba,s4d}.c, the optimizer libcommon/optim.c, the tasks libcommon/tasks.c.
 *
 * Reproducibility: everything random is a function of --seed and the step (the batch of step s,
 * the dropout masks of step s), so a run resumed from a checkpoint of step s continues exactly as
 * the uninterrupted run, and the thread count changes nothing (see nn.h). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "device.h"
#include "model_mamba.h"
#include "model_s4d.h"
#include "nn.h"
#include "optim.h"
#include "params.h"
#include "tasks.h"

static const char *usage =
    "Usage: ssm-train --model mamba|s4d|s4 --task TASK [OPTIONS] [FILE] -o CHECKPOINT\n"
    "Train an S4D or Mamba model and write a checkpoint (a tensor stream, see ssm-train(1)).\n"
    "\n"
    "Tasks: selective-copy, induction (generated from --seed), fmnist, fmnist-permuted\n"
    "       (Fashion-MNIST pixel by pixel), text FILE (bytes), stream FILE (tensors x, y).\n"
    "\n"
    "Model:\n"
    "      --model NAME        mamba, s4d, or s4 (S4D's block with S4's DPLR/Cauchy kernel, HiPPO-LegS)\n"
    "      --d-model N         width (default 64)\n"
    "      --n-layers N        layers (default mamba 2, s4d 4)\n"
    "      --d-state N         state size (default mamba 16, s4d 64)\n"
    "      --expand N          Mamba inner expansion (default 2)\n"
    "      --d-conv N          Mamba conv width (default 4)\n"
    "      --dt-rank N         Mamba dt rank (default ceil(d_model/16))\n"
    "      --dropout P         S4D dropout (default 0)\n"
    "      --pool mean|last    pooling for classification (S4D; default mean)\n"
    "Task:\n"
    "      --task NAME         see above\n"
    "      --seq-len N         sequence length (selective-copy, induction, text; default 256)\n"
    "      --copy-tokens N     tokens to copy (selective-copy, default 16)\n"
    "      --vocab N           vocabulary (selective-copy, induction, default 16)\n"
    "      --data-dir DIR      where the Fashion-MNIST IDX files are\n"
    "Training:\n"
    "      --steps N           optimizer steps (default 1000), or\n"
    "      --epochs N          passes over the training set (data sets)\n"
    "      --batch N           sequences per step (default 32)\n"
    "      --lr X              peak learning rate (default 2e-3)\n"
    "      --ssm-lr X          learning rate of S4D's log dt, A, B and S4's log dt, Lambda, P, B (default 1e-3)\n"
    "      --weight-decay X    AdamW decay of weight matrices (default 0.01)\n"
    "      --warmup N          linear warmup steps, then cosine (default steps/10, at most 500)\n"
    "      --min-lr-ratio X    final learning rate / peak (default 0.01)\n"
    "      --clip X            gradient norm clipping, 0 = off (default 1)\n"
    "      --seed N            seed of the init, the data and dropout (default 1)\n"
    "      --eval-every N      evaluate every N steps (default: every epoch, or steps/10)\n"
    "      --eval-examples N   examples in each evaluation (default: the task's eval split)\n"
    "      --log FILE          log: step split loss accuracy lr tokens_per_s time_s, as TSV, or\n"
    "                          JSON lines when FILE ends in .jsonl or with --log-format jsonl\n"
    "      --log-format F      tsv or jsonl (default: from the extension, else tsv)\n"
    "      --save-every N      write the checkpoint every N steps (needs -o FILE)\n"
    "      --resume CKPT       continue the run saved in CKPT (bit-exact)\n"
    "      --stop-at N         stop after step N with a checkpoint (the schedule stays --steps)\n"
    "      --device cpu|cuda   where to compute (default cpu; cuda: the model on the GPU)\n"
    "Common:\n"
    "  -o, --output FILE       the checkpoint (default stdout; '-' is stdout)\n"
    "      --threads N         threads (default all cores; results do not depend on it)\n"
    "      --progress          progress on stderr even when it is not a terminal\n"
    "  -q, --quiet / -v, --verbose / -h, --help / --version\n"
    "Exit status: 0 done, 1 data error or NaN loss, 2 usage error, 130/143 interrupted (checkpoint\n"
    "written).\n";

/* ---- options: a table, so that a checkpoint can store and restore the ones that matter -------- */
typedef struct {
    const char *name;
    char type;          /* 'i' integer, 'd' double, 's' string */
    int saved;          /* stored in the checkpoint and restored by --resume */
    long long i;
    double d;
    const char *s;
    int set;            /* given on the command line */
} option;

enum { O_MODEL, O_TASK, O_DMODEL, O_NLAYERS, O_DSTATE, O_EXPAND, O_DCONV, O_DTRANK, O_DROPOUT, O_POOL,
       O_SEQLEN, O_COPY, O_VOCAB, O_DATADIR, O_STEPS, O_EPOCHS, O_BATCH, O_LR, O_SSMLR, O_WD, O_WARMUP,
       O_MINLR, O_CLIP, O_SEED, O_EVALEVERY, O_EVALEX, O_LOG, O_SAVEEVERY, O_RESUME, O_DEVICE, O_STOPAT, O_LOGFMT, O_COUNT };

static option opts[O_COUNT] = {
    [O_MODEL] = {"model", 's', 1, 0, 0, NULL, 0},
    [O_TASK] = {"task", 's', 1, 0, 0, NULL, 0},
    [O_DMODEL] = {"d-model", 'i', 1, 64, 0, NULL, 0},
    [O_NLAYERS] = {"n-layers", 'i', 1, 0, 0, NULL, 0},
    [O_DSTATE] = {"d-state", 'i', 1, 0, 0, NULL, 0},
    [O_EXPAND] = {"expand", 'i', 1, 2, 0, NULL, 0},
    [O_DCONV] = {"d-conv", 'i', 1, 4, 0, NULL, 0},
    [O_DTRANK] = {"dt-rank", 'i', 1, 0, 0, NULL, 0},
    [O_DROPOUT] = {"dropout", 'd', 1, 0, 0.0, NULL, 0},
    [O_POOL] = {"pool", 's', 1, 0, 0, "mean", 0},
    [O_SEQLEN] = {"seq-len", 'i', 1, 0, 0, NULL, 0},
    [O_COPY] = {"copy-tokens", 'i', 1, 0, 0, NULL, 0},
    [O_VOCAB] = {"vocab", 'i', 1, 0, 0, NULL, 0},
    [O_DATADIR] = {"data-dir", 's', 0, 0, 0, NULL, 0},
    [O_STEPS] = {"steps", 'i', 1, 0, 0, NULL, 0},
    [O_EPOCHS] = {"epochs", 'd', 1, 0, 0.0, NULL, 0},
    [O_BATCH] = {"batch", 'i', 1, 32, 0, NULL, 0},
    [O_LR] = {"lr", 'd', 1, 0, 2e-3, NULL, 0},
    [O_SSMLR] = {"ssm-lr", 'd', 1, 0, 1e-3, NULL, 0},
    [O_WD] = {"weight-decay", 'd', 1, 0, 0.01, NULL, 0},
    [O_WARMUP] = {"warmup", 'i', 1, -1, 0, NULL, 0},
    [O_MINLR] = {"min-lr-ratio", 'd', 1, 0, 0.01, NULL, 0},
    [O_CLIP] = {"clip", 'd', 1, 0, 1.0, NULL, 0},
    [O_SEED] = {"seed", 'i', 1, 1, 0, NULL, 0},
    [O_EVALEVERY] = {"eval-every", 'i', 1, 0, 0, NULL, 0},
    [O_EVALEX] = {"eval-examples", 'i', 1, 0, 0, NULL, 0},
    [O_LOG] = {"log", 's', 0, 0, 0, NULL, 0},
    [O_SAVEEVERY] = {"save-every", 'i', 0, 0, 0, NULL, 0},
    [O_RESUME] = {"resume", 's', 0, 0, 0, NULL, 0},
    [O_DEVICE] = {"device", 's', 0, 0, 0, "cpu", 0},
    [O_STOPAT] = {"stop-at", 'i', 0, 0, 0, NULL, 0},
    [O_LOGFMT] = {"log-format", 's', 0, 0, 0, NULL, 0},
};

static void option_parse(option *o, const char *arg) {
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", o->name);
    if (o->type == 'i') o->i = ssm_parse_int(flag, arg, 0, 1LL << 40);
    else if (o->type == 'd') o->d = ssm_parse_double(flag, arg, 0, 1e9);
    else o->s = arg;
}

/* ---- the model behind one interface ----------------------------------------------------- */
typedef struct {
    int is_mamba;
    mamba_model *mm;
    s4d_model *sm;
    ssm_params *ps;
} model;

static float model_forward(model *m, const int32_t *tok, const float *feat, int batch, int L, const int32_t *tgt,
                           int training, uint64_t dropout_seed) {
    if (m->is_mamba) return mamba_forward(m->mm, tok, feat, batch, L, tgt, NULL);
    return s4d_forward(m->sm, tok, feat, batch, L, tgt, training, dropout_seed);
}
static void model_backward(model *m) {
    if (m->is_mamba) mamba_backward(m->mm);
    else s4d_backward(m->sm);
}
static void model_accuracy(model *m, int64_t *correct, int64_t *counted) {
    if (m->is_mamba) mamba_accuracy(m->mm, correct, counted);
    else s4d_accuracy(m->sm, correct, counted);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */
static volatile sig_atomic_t got_signal;
static const char *data_file;   /* the task's FILE (text, stream), saved for --resume */
/* The first SIGINT/SIGTERM asks for a checkpoint at the end of the step; a second one kills. */
static void on_signal(int sig) {
    got_signal = sig;
    signal(sig, SIG_DFL);
}

typedef struct {
    model *m;
    adamw *opt;
    ssm_task *task;
    const char *path;
} run_state;

static ssm_tensor *config_tensor(const run_state *r) {
    ssm_tensor *c = ssm_tensor_new("config", SSM_U8, 1, (int64_t[]){0});
    if (r->m->is_mamba) mamba_config_to_attrs(mamba_get_config(r->m->mm), c);
    else s4d_config_to_attrs(s4d_get_config(r->m->sm), c);
    ssm_tensor_set_attr(c, "task", ssm_task_name(r->task));
    char desc[256];
    ssm_task_describe(r->task, desc, sizeof desc);
    ssm_tensor_set_attr(c, "task_params", desc);
    if (strcmp(ssm_task_name(r->task), "text") == 0) ssm_tensor_set_attr(c, "tokenizer", "bytes");
    return c;
}

static void save_checkpoint(const run_state *r, const char *path) {
    ssm_tensor_set set;
    ssm_set_init(&set);
    ssm_set_put(&set, config_tensor(r));
    ssm_tensor *tr = ssm_tensor_new("train", SSM_U8, 1, (int64_t[]){0});
    ssm_tensor_set_attrf(tr, "step", "%lld", (long long)r->opt->step);
    if (data_file) ssm_tensor_set_attr(tr, "file", data_file);
    for (int i = 0; i < O_COUNT; i++) {
        const option *o = &opts[i];
        if (!o->saved) continue;
        if (o->type == 'i') ssm_tensor_set_attrf(tr, o->name, "%lld", o->i);
        else if (o->type == 'd') ssm_tensor_set_attrf(tr, o->name, "%.17g", o->d);
        else if (o->s) ssm_tensor_set_attr(tr, o->name, o->s);
    }
    ssm_set_put(&set, tr);
    ssm_params_to_set(r->m->ps, r->m->ps->data, "", &set);
    ssm_params_to_set(r->m->ps, r->opt->m, "adam.m.", &set);
    ssm_params_to_set(r->m->ps, r->opt->v, "adam.v.", &set);
    ssm_writer *w = strcmp(path, "-") == 0 ? ssm_cli_open_output("-") : ssm_writer_open(path, ssm_cli.level);
    if (!w) ssm_die("%s: cannot write the checkpoint: %s", path, strerror(errno));
    for (int i = 0; i < set.n; i++)
        if (ssm_writer_write(w, set.items[i])) ssm_die("%s: %s", path, ssm_writer_error(w));
    char err[512];
    if (ssm_writer_close(w, err, sizeof err)) ssm_die("%s: %s", path, err);
    ssm_set_free(&set);
}

static void load_set(const char *path, ssm_tensor_set *set) {
    ssm_reader *rd = ssm_cli_open_input(path);
    ssm_tensor *h;
    ssm_set_init(set);
    while (ssm_next_or_die(rd, &h)) {
        ssm_tensor *t = ssm_tensor_new_header(h);
        ssm_read_payload_or_die(rd, t);
        ssm_set_put(set, t);
    }
    ssm_reader_close(rd);
}

/* --resume: options not given on the command line take the checkpoint's values; a model or task
 * option given with another value is refused (the parameters would not fit). */
static void restore_options(const ssm_tensor *tr, const char *path) {
    for (int i = 0; i < O_COUNT; i++) {
        option *o = &opts[i];
        if (!o->saved) continue;
        const char *v = ssm_tensor_get_attr(tr, o->name);
        if (!v) continue;
        option saved = *o;
        if (o->type == 'i') saved.i = strtoll(v, NULL, 10);
        else if (o->type == 'd') saved.d = strtod(v, NULL);
        else saved.s = ssm_xstrdup(v);
        int shape = i <= O_VOCAB;
        if (o->set) {
            int same = o->type == 'i' ? o->i == saved.i : o->type == 'd' ? o->d == saved.d : strcmp(o->s, saved.s) == 0;
            if (!same && shape) ssm_usage_error("--%s differs from the checkpoint %s (%s); leave it out to resume", o->name, path, v);
            continue;
        }
        *o = saved;
        o->set = 0;
    }
}

/* ---- evaluation ------------------------------------------------------------------------------ */
typedef struct { double loss, acc; int64_t counted; } eval_result;

static eval_result evaluate(model *m, ssm_task *task, int64_t n_examples, int batch, uint64_t seed,
                            int32_t *tok, float *feat, int32_t *tgt) {
    int L = ssm_task_length(task);
    double loss_sum = 0;
    int64_t correct_sum = 0, counted_sum = 0;
    for (int64_t first = 0; first < n_examples; first += batch) {
        int n = (int)(n_examples - first < batch ? n_examples - first : batch);
        ssm_task_examples(task, 1, seed, first, n, tok, feat, tgt);
        float loss = model_forward(m, ssm_task_vocab(task) ? tok : NULL, feat, n, L, tgt, 0, 0);
        int64_t correct, counted;
        model_accuracy(m, &correct, &counted);
        loss_sum += (double)loss * (double)counted;
        correct_sum += correct;
        counted_sum += counted;
    }
    eval_result e = {counted_sum ? loss_sum / (double)counted_sum : 0,
                     counted_sum ? (double)correct_sum / (double)counted_sum : 0, counted_sum};
    return e;
}

/* ---- the log: one record per line, TSV (with a header) or JSON lines (the same keys) ----------- */
static int log_jsonl;
static void json_number(FILE *f, const char *key, double v, const char *fmt) {
    fprintf(f, ", \"%s\": ", key);
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("null", f);   /* JSON has no NaN; ssm-viz reads null as an empty value */
}
static void log_record(FILE *f, int64_t step, const char *split, double loss, double acc, double lr, double tok_s,
                       double time_s) {
    if (log_jsonl) {
        fprintf(f, "{\"step\": %lld, \"split\": \"%s\"", (long long)step, split);
        json_number(f, "loss", loss, "%.6f");
        json_number(f, "accuracy", acc, "%.6f");
        json_number(f, "lr", lr, "%.6g");
        json_number(f, "tokens_per_s", tok_s, "%.1f");
        json_number(f, "time_s", time_s, "%.3f");
        fputs("}\n", f);
    } else {
        fprintf(f, "%lld\t%s\t%.6f\t%.6f\t%.6g\t", (long long)step, split, loss, acc, lr);
        if (isfinite(tok_s)) fprintf(f, "%.1f", tok_s);
        fprintf(f, "\t%.3f\n", time_s);
    }
    fflush(f);
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-train", usage);
    static struct option lopts[O_COUNT + 10] = {SSM_CLI_COMMON_OPTS};
    int nl = 0;
    while (lopts[nl].name) nl++;
    for (int i = 0; i < O_COUNT; i++)
        lopts[nl++] = (struct option){opts[i].name, required_argument, 0, SSM_OPT_TOOL_FIRST + i};
    lopts[nl] = (struct option){0, 0, 0, 0};
    int c;
    while ((c = getopt_long(argc, argv, SSM_CLI_COMMON_SHORT, lopts, NULL)) != -1) {
        if (c >= SSM_OPT_TOOL_FIRST && c < SSM_OPT_TOOL_FIRST + O_COUNT) {
            option *o = &opts[c - SSM_OPT_TOOL_FIRST];
            option_parse(o, optarg);
            o->set = 1;
        } else if (!ssm_cli_common_option(c, optarg)) {
            ssm_usage_error("unknown option");
        }
    }
    const char *file = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc) ssm_usage_error("one input FILE at most, got '%s' too", argv[optind + 1]);
    /* --device cuda: before anything is allocated (the model's buffers become GPU memory) */
    int on_gpu = ssm_parse_device(opts[O_DEVICE].s) == SSM_DEVICE_CUDA;
    nn_set_threads(ssm_cli.threads);

    /* --resume: the saved options first, then the checkpoint's tensors */
    ssm_tensor_set ckpt;
    ssm_set_init(&ckpt);
    const char *resume = opts[O_RESUME].s;
    if (resume) {
        load_set(resume, &ckpt);
        ssm_tensor *tr = ssm_require(&ckpt, "train", "u8 [0] with the training options");
        restore_options(tr, resume);
        if (!file && ssm_tensor_get_attr(tr, "file")) file = ssm_xstrdup(ssm_tensor_get_attr(tr, "file"));
    }
    data_file = file;
    if (!opts[O_MODEL].s) ssm_usage_error("--model is required (mamba, s4d or s4)");
    if (!opts[O_TASK].s) ssm_usage_error("--task is required");
    int is_mamba = strcmp(opts[O_MODEL].s, "mamba") == 0;
    int is_s4 = strcmp(opts[O_MODEL].s, "s4") == 0;
    if (!is_mamba && !is_s4 && strcmp(opts[O_MODEL].s, "s4d") != 0)
        ssm_usage_error("--model: expected mamba, s4d or s4, got '%s'", opts[O_MODEL].s);
    if (strcmp(opts[O_POOL].s, "mean") && strcmp(opts[O_POOL].s, "last")) ssm_usage_error("--pool: expected mean or last");
    if (opts[O_BATCH].i < 1) ssm_usage_error("--batch: must be at least 1");
    if (opts[O_DROPOUT].d >= 1) ssm_usage_error("--dropout: must be below 1");
    if (is_mamba && opts[O_DROPOUT].d > 0) ssm_usage_error("--dropout: the Mamba model has no dropout");

    ssm_task_options to = {(int)opts[O_SEQLEN].i, (int)opts[O_COPY].i, (int)opts[O_VOCAB].i, file, opts[O_DATADIR].s};
    const char *tname = opts[O_TASK].s;
    if ((strcmp(tname, "text") == 0 || strcmp(tname, "stream") == 0) && !file) ssm_usage_error("--task %s needs a FILE argument", tname);
    ssm_task *task = ssm_task_open(tname, &to);
    int L = ssm_task_length(task), V = ssm_task_vocab(task), classes = ssm_task_classes(task);
    int batch = (int)opts[O_BATCH].i;

    if (on_gpu) ssm_compute_use_gpu();   /* dies (exit 1) when no GPU can be used */
    /* the model */
    model m = {0};
    m.is_mamba = is_mamba;
    if (is_mamba) {
        mamba_config mc = mamba_config_default();
        mc.d_model = (int)opts[O_DMODEL].i;
        mc.n_layers = opts[O_NLAYERS].i ? (int)opts[O_NLAYERS].i : 2;
        mc.d_state = opts[O_DSTATE].i ? (int)opts[O_DSTATE].i : 16;
        mc.expand = (int)opts[O_EXPAND].i; mc.d_conv = (int)opts[O_DCONV].i; mc.dt_rank = (int)opts[O_DTRANK].i;
        mc.vocab_size = V; mc.d_input = ssm_task_d_input(task); mc.n_classes = classes;
        if (!classes) mc.vocab_size = ssm_task_out_vocab(task) > V ? ssm_task_out_vocab(task) : V;
        m.mm = resume ? mamba_from_set(&ckpt) : mamba_new(&mc);
        if (!resume) mamba_init_params(m.mm, (uint64_t)opts[O_SEED].i);
        m.ps = mamba_params(m.mm);
    } else {
        s4d_config sc = s4d_config_default();
        sc.d_model = (int)opts[O_DMODEL].i;
        sc.n_layers = opts[O_NLAYERS].i ? (int)opts[O_NLAYERS].i : 4;
        sc.d_state = opts[O_DSTATE].i ? (int)opts[O_DSTATE].i : 64;
        sc.vocab_size = V; sc.d_input = ssm_task_d_input(task); sc.n_classes = classes;
        if (!classes) sc.vocab_size = ssm_task_out_vocab(task) > V ? ssm_task_out_vocab(task) : V;
        sc.pool_last = strcmp(opts[O_POOL].s, "last") == 0;
        sc.dropout = (float)opts[O_DROPOUT].d;
        sc.dplr = is_s4;
        sc.l_kernel = is_s4 ? L : 0;   /* C-tilde is trained for this length */
        m.sm = resume ? s4d_from_set(&ckpt) : s4d_new(&sc);
        if (!resume) s4d_init_params(m.sm, (uint64_t)opts[O_SEED].i);
        m.ps = s4d_params(m.sm);
    }

    /* the schedule */
    int64_t steps_per_epoch = ssm_task_train_size(task) ? (ssm_task_train_size(task) + batch - 1) / batch : 0;
    int64_t total = opts[O_STEPS].i;
    if (opts[O_EPOCHS].d > 0) {
        if (!steps_per_epoch) ssm_usage_error("--epochs: task '%s' is generated without end; give --steps", tname);
        if (opts[O_STEPS].set) ssm_usage_error("--steps and --epochs: give one of them");
        total = (int64_t)ceil(opts[O_EPOCHS].d * (double)steps_per_epoch);
    }
    if (total <= 0) total = 1000;
    opts[O_STEPS].i = total;
    adamw opt = adamw_default();
    opt.lr = (float)opts[O_LR].d; opt.ssm_lr = (float)opts[O_SSMLR].d; opt.weight_decay = (float)opts[O_WD].d;
    opt.clip = (float)opts[O_CLIP].d; opt.min_lr_ratio = (float)opts[O_MINLR].d; opt.total_steps = total;
    opt.warmup = opts[O_WARMUP].i >= 0 ? opts[O_WARMUP].i : (total / 10 < 500 ? total / 10 : 500);
    adamw_alloc(&opt, m.ps);
    if (resume) {
        ssm_params_from_set(m.ps, opt.m, "adam.m.", &ckpt);
        ssm_params_from_set(m.ps, opt.v, "adam.v.", &ckpt);
        const char *st = ssm_tensor_get_attr(ssm_set_get(&ckpt, "train"), "step");
        opt.step = st ? strtoll(st, NULL, 10) : 0;
        ssm_set_free(&ckpt);
    }
    int64_t eval_every = opts[O_EVALEVERY].i ? opts[O_EVALEVERY].i : steps_per_epoch ? steps_per_epoch : (total / 10 > 0 ? total / 10 : 1);
    int64_t eval_n = opts[O_EVALEX].i ? opts[O_EVALEX].i : ssm_task_eval_size(task);
    if (eval_n > ssm_task_eval_size(task)) eval_n = ssm_task_eval_size(task);
    const char *out = ssm_cli.output;
    int64_t save_every = opts[O_SAVEEVERY].i;
    if (save_every && strcmp(out, "-") == 0) ssm_usage_error("--save-every needs -o FILE");
    if (strcmp(out, "-") == 0 && isatty(STDOUT_FILENO)) ssm_usage_error("the checkpoint is a binary stream: give -o FILE or redirect stdout");

    FILE *log = NULL;
    if (opts[O_LOGFMT].s && strcmp(opts[O_LOGFMT].s, "tsv") && strcmp(opts[O_LOGFMT].s, "jsonl"))
        ssm_usage_error("--log-format: expected tsv or jsonl, got '%s'", opts[O_LOGFMT].s);
    if (opts[O_LOGFMT].s && !opts[O_LOG].s) ssm_usage_error("--log-format needs --log FILE");
    if (opts[O_LOG].s) {
        size_t ln = strlen(opts[O_LOG].s);
        log_jsonl = opts[O_LOGFMT].s ? strcmp(opts[O_LOGFMT].s, "jsonl") == 0 : ln > 6 && strcmp(opts[O_LOG].s + ln - 6, ".jsonl") == 0;
        log = fopen(opts[O_LOG].s, resume ? "a" : "w");
        if (!log) ssm_die("%s: cannot open the log: %s", opts[O_LOG].s, strerror(errno));
        if (ftell(log) == 0 && !log_jsonl) fprintf(log, "step\tsplit\tloss\taccuracy\tlr\ttokens_per_s\ttime_s\n");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int d_in = ssm_task_d_input(task);
    int32_t *tok = ssm_xcalloc((size_t)batch * L + 1, sizeof(int32_t));
    int32_t *tgt = ssm_xcalloc((size_t)batch * L + 1, sizeof(int32_t));
    float *feat = ssm_xcalloc((size_t)batch * L * (d_in ? d_in : 1) + 1, sizeof(float));
    uint64_t seed = (uint64_t)opts[O_SEED].i;
    run_state rs = {&m, &opt, task, out};
    int show = ssm_cli.verbose >= 0 && (ssm_cli.progress || isatty(STDERR_FILENO));
    int is_text = strcmp(tname, "text") == 0;
    ssm_info("%s on %s: %lld parameters, L %d, batch %d, %lld steps", opts[O_MODEL].s, tname,
             (long long)m.ps->total, L, batch, (long long)total);
    double t0 = ssm_now(), last_show = 0, tok_rate = 0;
    int64_t start_step = opt.step, last_saved = opt.step;
    eval_result last_eval = {NAN, NAN, 0};
    int64_t stop_at = opts[O_STOPAT].i && opts[O_STOPAT].i < total ? opts[O_STOPAT].i : total;
    while (opt.step < stop_at) {
        int64_t step = opt.step;
        double ts = ssm_now();
        ssm_task_examples(task, 0, seed, step * batch, batch, tok, feat, tgt);
        ssm_params_zero_grad(m.ps);
        uint64_t dseed = seed * 0x2545f4914f6cdd1dull + (uint64_t)step;
        float loss = model_forward(&m, V ? tok : NULL, feat, batch, L, tgt, 1, dseed);
        if (!isfinite(loss)) {
            if (log) fclose(log);
            ssm_die("step %lld: the loss is %s; stopping (the last good checkpoint, step %lld, is %s)", (long long)step + 1,
                    isnan(loss) ? "NaN" : "infinite", (long long)last_saved, strcmp(out, "-") && last_saved > 0 ? out : "not written");
        }
        model_backward(&m);
        float lr_now = opt.lr * adamw_lr_factor(&opt, step);
        double gnorm = adamw_step(&opt, m.ps);
        if (!isfinite(gnorm)) {
            if (log) fclose(log);
            ssm_die("step %lld: the gradient norm is not finite; stopping (the last good checkpoint, step %lld, is %s)",
                    (long long)step + 1, (long long)last_saved, strcmp(out, "-") && last_saved > 0 ? out : "not written");
        }
        int64_t correct, counted;
        model_accuracy(&m, &correct, &counted);
        double now = ssm_now(), dt = now - ts;
        double rate = dt > 0 ? (double)batch * L / dt : 0;
        tok_rate = tok_rate ? 0.9 * tok_rate + 0.1 * rate : rate;
        double acc = counted ? (double)correct / (double)counted : 0;
        if (log) log_record(log, opt.step, "train", loss, acc, lr_now, rate, now - t0);
        int do_eval = opt.step % eval_every == 0 || opt.step == total;
        if (do_eval) {
            last_eval = evaluate(&m, task, eval_n, batch, seed, tok, feat, tgt);
            if (log) log_record(log, opt.step, "eval", last_eval.loss, last_eval.acc, lr_now, NAN, ssm_now() - t0);
            if (show || ssm_cli.verbose > 0) {
                if (show) fputc('\r', stderr);
                fprintf(stderr, "%s: step %lld: eval loss %.4f%s, accuracy %.2f%%%-20s\n", ssm_cli.prog, (long long)opt.step,
                        is_text ? last_eval.loss / M_LN2 : last_eval.loss, is_text ? " bits/byte" : "", 100 * last_eval.acc, "");
            }
        }
        if (show && (now - last_show > 0.25 || opt.step == total)) {
            last_show = now;
            char eta[32];
            double per = (now - t0) / (double)(opt.step - start_step);
            fmt_duration(eta, sizeof eta, per * (double)(total - opt.step));
            fprintf(stderr, "\r%s: step %lld/%lld  loss %.4f%s  acc %.1f%%  %.0f tok/s  ETA %s   ", ssm_cli.prog,
                    (long long)opt.step, (long long)total, is_text ? loss / M_LN2 : loss, is_text ? " bpb" : "", 100 * acc,
                    tok_rate, eta);
            fflush(stderr);
        }
        if (save_every && opt.step % save_every == 0 && opt.step < total) { save_checkpoint(&rs, out); last_saved = opt.step; }
        if (got_signal) {
            int sig = got_signal;
            if (show) fputc('\n', stderr);
            if (log) fclose(log);
            if (strcmp(out, "-")) {
                save_checkpoint(&rs, out);
                fprintf(stderr, "%s: %s at step %lld: checkpoint written to %s (continue with --resume %s)\n", ssm_cli.prog,
                        sig == SIGINT ? "interrupted" : "terminated", (long long)opt.step, out, out);
            } else {
                fprintf(stderr, "%s: %s at step %lld: no checkpoint (the output is stdout)\n", ssm_cli.prog,
                        sig == SIGINT ? "interrupted" : "terminated", (long long)opt.step);
            }
            free(tok); free(tgt); free(feat);
            exit(128 + sig);
        }
    }
    if (show) fputc('\n', stderr);
    if (log) fclose(log);
    save_checkpoint(&rs, out);
    if (ssm_cli.verbose > 0 || show) {
        double base = ssm_task_baseline(task);
        char bl[96] = "";
        if (isfinite(base)) snprintf(bl, sizeof bl, " (%s baseline %.4f)", is_text ? "unigram" : "chance", is_text ? base / M_LN2 : base);
        fprintf(stderr, "%s: %lld steps in %.1fs; eval loss %.4f%s%s, accuracy %.2f%%\n", ssm_cli.prog,
                (long long)(opt.step - start_step), ssm_now() - t0, is_text ? last_eval.loss / M_LN2 : last_eval.loss,
                is_text ? " bits/byte" : "", bl, 100 * last_eval.acc);
    }
    adamw_free(&opt);
    free(tok); free(tgt); free(feat);
    if (m.mm) mamba_free(m.mm);
    if (m.sm) s4d_free(m.sm);
    ssm_task_free(task);
    return 0;
}
