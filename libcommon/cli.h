/* cli.h - what every tool shares: the error path, option parsing helpers, stream I/O wiring and
 * progress reporting.  See ../shared/CONVENTIONS.md: errors are one line "tool: what: why" and
 * exit status 0 ok, 1 runtime/data error, 2 usage error.
 *
 * A tool's main typically reads:
 *
 *     ssm_cli_init(argc, argv, "ssm-foo", usage_text);
 *     ... getopt_long loop; unknown options -> ssm_usage_error("...") ...
 *     ssm_reader *in = ssm_cli_open_input(path);
 *     ssm_writer *out = ssm_cli_open_output(ssm_cli.output);   // refuses a terminal
 *     ...
 *     ssm_cli_finish(out);                                       // close, rename, exit status
 */
#ifndef SSM_CLI_H
#define SSM_CLI_H

#include <stdint.h>
#include "stream.h"

#define SSM_VERSION_STRING "0.1.0"

/* Global state set by the common options. */
typedef struct {
    const char *prog;     /* "ssm-foo" */
    const char *usage;    /* text printed by --help */
    const char *output;   /* -o FILE, default "-" */
    int verbose;          /* -v increments, -q sets -1 */
    int level;            /* --level (compression), default SSM_DEFAULT_LEVEL */
    int threads;          /* --threads, 0 = all cores */
    int progress;         /* --progress: force progress even when stderr is not a terminal */
} ssm_cli_state;
extern ssm_cli_state ssm_cli;

void ssm_cli_init(int argc, char **argv, const char *prog, const char *usage);

/* The common long options, to append to a tool's getopt_long table, and their handler.
 * SSM_CLI_COMMON_OPTS gives --help --version --quiet --verbose --output --level --threads
 * --progress; short forms -h -q -v -o.  ssm_cli_common_option returns 1 if it handled `opt`. */
#define SSM_OPT_BASE 0x1000
enum { SSM_OPT_HELP = SSM_OPT_BASE, SSM_OPT_VERSION, SSM_OPT_LEVEL, SSM_OPT_THREADS,
       SSM_OPT_PROGRESS, SSM_OPT_TOOL_FIRST = SSM_OPT_BASE + 64 };
#define SSM_CLI_COMMON_OPTS                                         \
    {"help", no_argument, 0, 'h'},                                  \
    {"version", no_argument, 0, SSM_OPT_VERSION},                   \
    {"quiet", no_argument, 0, 'q'},                                 \
    {"verbose", no_argument, 0, 'v'},                               \
    {"output", required_argument, 0, 'o'},                          \
    {"level", required_argument, 0, SSM_OPT_LEVEL},                 \
    {"threads", required_argument, 0, SSM_OPT_THREADS},             \
    {"progress", no_argument, 0, SSM_OPT_PROGRESS}
#define SSM_CLI_COMMON_SHORT "hqvo:"
int ssm_cli_common_option(int opt, const char *arg);

/* Errors: print "prog: message" and exit.  ssm_die exits 1 (runtime/data), ssm_usage_error 2
 * (and adds "try 'prog --help'").  Both abort any open output first (see ssm_writer_abort). */
void ssm_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void ssm_usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void ssm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints only with -v. */
void ssm_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that dies with a clear message instead of returning NULL. */
void *ssm_xmalloc(size_t n);
void *ssm_xcalloc(size_t n, size_t size);
void *ssm_xrealloc(void *p, size_t n);
char *ssm_xstrdup(const char *s);

/* Strict number parsing for option values: the whole string must parse and lie in [lo, hi],
 * else a usage error naming the option ("--dt: expected a number > 0, got 'abc'"). */
long long ssm_parse_int(const char *opt, const char *s, long long lo, long long hi);
double ssm_parse_double(const char *opt, const char *s, double lo, double hi);
/* "2,1024,64" or "2x1024x64" -> dims; returns the rank.  Usage error if malformed. */
int ssm_parse_shape(const char *opt, const char *s, int64_t *dims, int max_rank);
/* "a:b" ranges as in Python slices (either side may be empty); -> [*lo, *hi) clipped to n. */
void ssm_parse_range(const char *opt, const char *s, int64_t n, int64_t *lo, int64_t *hi);

/* Stream wiring with the error path built in.  Outputs that are terminals are refused. */
ssm_reader *ssm_cli_open_input(const char *path);
/* Closes an input opened by ssm_cli_open_input (inputs still open at exit are simply dropped). */
void ssm_cli_close_input(ssm_reader *r);
ssm_writer *ssm_cli_open_output(const char *path);
/* Closes one output opened by ssm_cli_open_output (renaming a file into place) before the end of
 * the run, for tools with several outputs; dies on a write error. */
void ssm_cli_close_output(ssm_writer *w);
/* Closes the output (renaming a file into place), then exits 0. */
void ssm_cli_finish(ssm_writer *out) __attribute__((noreturn));

/* Reader calls that die with the reader's message on error. */
int ssm_next_or_die(ssm_reader *r, ssm_tensor **hdr);         /* 1 frame, 0 end */
void ssm_read_payload_or_die(ssm_reader *r, ssm_tensor *t);   /* allocates t->data */
void ssm_pass_through_or_die(ssm_reader *r, ssm_writer *w, const ssm_tensor *hdr);
void ssm_write_or_die(ssm_writer *w, const ssm_tensor *t);

/* The usual loop of a tool that consumes some tensors and passes the rest on: every frame whose
 * name satisfies want(name, ctx) is loaded whole into *set; every other frame is copied to out
 * (if out is NULL, skipped) as it arrives, so pass-through never holds a tensor in memory. */
void ssm_collect_or_pass(ssm_reader *in, ssm_writer *out,
                         int (*want)(const char *name, void *ctx), void *ctx,
                         ssm_tensor_set *set);

/* A tensor the tool needs: dies "missing tensor 'A' (expected f32/f64 [H, N])" if absent. */
ssm_tensor *ssm_require(const ssm_tensor_set *set, const char *name, const char *expect);
/* Dies unless t has the given rank and dims (a dim of -1 matches anything):
 * "tensor 'B': expected shape [4, 16], got [4, 15]". */
void ssm_require_shape(const ssm_tensor *t, int rank, const int64_t *dims);
/* Converted copies for computing; die (naming the tensor) on a dtype that cannot convert, and on
 * NaN/Inf values when check_finite is set. */
double *ssm_as_f64(const ssm_tensor *t, int check_finite);   /* real dtypes; malloc'd */
float *ssm_as_f32(const ssm_tensor *t, int check_finite);
/* Complex data as interleaved (re, im) doubles, numel pairs; real inputs get im = 0. */
double *ssm_as_c128(const ssm_tensor *t, int check_finite);

/* Progress on stderr (rate and ETA) when stderr is a terminal or --progress was given. */
typedef struct {
    const char *what;
    int64_t total, done;
    double t0, last;
    int active;
} ssm_progress;
void ssm_progress_start(ssm_progress *p, const char *what, int64_t total);
void ssm_progress_update(ssm_progress *p, int64_t done);
void ssm_progress_end(ssm_progress *p);

double ssm_now(void);   /* monotonic seconds */

#endif
