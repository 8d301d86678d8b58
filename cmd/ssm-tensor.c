/* ssm-tensor - inspect, convert, generate and compare tensor streams.
 * (Foundation version: info and cat.  Subcommands are dispatched from the table in main.) */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "Usage: ssm-tensor COMMAND [OPTIONS] [FILE...]\n"
    "Inspect, convert, generate and compare tensor streams (see ssm-stream(5)).\n"
    "\n"
    "Commands:\n"
    "  info [FILE...]      name, dtype, shape, attributes, sizes and statistics of each tensor\n"
    "  cat [FILE...]       validate and concatenate streams to stdout\n"
    "\n"
    "Common options:\n"
    "  -o, --output FILE   write the stream to FILE (default stdout; '-' is stdout)\n"
    "      --level N       compression level 0 (stored) .. 9 (default 1)\n"
    "      --threads N     threads for compression (default: all cores)\n"
    "  -q, --quiet         no warnings;  -v, --verbose  more messages\n"
    "  -h, --help          this text;    --version     the version\n"
    "FILE '-' or no FILE reads stdin.  Exit status: 0 ok, 1 data error, 2 usage error.\n";

static int parse_options(int argc, char **argv, int *first) {
    static struct option opts[] = {SSM_CLI_COMMON_OPTS, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+" SSM_CLI_COMMON_SHORT, opts, NULL)) != -1)
        if (!ssm_cli_common_option(c, optarg)) ssm_usage_error("unknown option");
    *first = optind;
    return 0;
}

static void info_tensor(ssm_reader *r, ssm_tensor *h) {
    char desc[600];
    ssm_tensor_describe(h, desc, sizeof desc);
    int64_t n = ssm_tensor_numel(h);
    printf("%-24s %s  %lld elements, %zu bytes\n", h->name, desc, (long long)n, ssm_tensor_nbytes(h));
    for (int i = 0; i < h->nattrs; i++) printf("    %s=%s\n", h->attrs[i].key, h->attrs[i].value);
    /* statistics, streamed so a huge tensor needs no memory */
    size_t es = ssm_dtype_size(h->dtype);
    size_t cap = (1u << 20) / es * es;
    unsigned char *buf = ssm_xmalloc(cap);
    ssm_tensor view = *h;
    view.data = buf;
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    int64_t nonfinite = 0, count = 0;
    size_t carry = 0;
    for (;;) {
        int64_t k = ssm_reader_read_some(r, buf + carry, cap - carry);
        if (k < 0) ssm_die("%s", ssm_reader_error(r));
        if (k == 0) break;
        size_t have = carry + (size_t)k, whole = have / es;
        for (size_t i = 0; i < whole; i++) {
            double v = ssm_tensor_get_f64(&view, (int64_t)i);
            if (!isfinite(v)) { nonfinite++; continue; }
            if (v < mn) mn = v;
            if (v > mx) mx = v;
            sum += v;
            count++;
        }
        carry = have - whole * es;
        memmove(buf, buf + whole * es, carry);
    }
    free(buf);
    if (n > 0)
        printf("    min %.6g  max %.6g  mean %.6g  nonfinite %lld%s\n", count ? mn : NAN, count ? mx : NAN,
               count ? sum / (double)count : NAN, (long long)nonfinite,
               ssm_dtype_is_complex(h->dtype) ? "  (real parts)" : "");
}

static int cmd_info(int argc, char **argv) {
    int first;
    parse_options(argc, argv, &first);
    int nfiles = argc - first;
    for (int f = 0; f < (nfiles ? nfiles : 1); f++) {
        ssm_reader *r = ssm_cli_open_input(nfiles ? argv[first + f] : "-");
        ssm_tensor *h;
        int count = 0;
        while (ssm_next_or_die(r, &h)) { info_tensor(r, h); count++; }
        if (count == 0) printf("%s: empty stream\n", ssm_reader_label(r));
        ssm_reader_close(r);
    }
    return 0;
}

static int cmd_cat(int argc, char **argv) {
    int first;
    parse_options(argc, argv, &first);
    ssm_writer *w = ssm_cli_open_output(ssm_cli.output);
    int nfiles = argc - first;
    for (int f = 0; f < (nfiles ? nfiles : 1); f++) {
        ssm_reader *r = ssm_cli_open_input(nfiles ? argv[first + f] : "-");
        ssm_tensor *h;
        while (ssm_next_or_die(r, &h)) ssm_pass_through_or_die(r, w, h);
        ssm_reader_close(r);
    }
    ssm_cli_finish(w);
}

int main(int argc, char **argv) {
    ssm_cli_init(argc, argv, "ssm-tensor", usage);
    if (argc < 2) ssm_usage_error("no command given");
    static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
        {"info", cmd_info}, {"cat", cmd_cat},
    };
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) { fputs(usage, stdout); return 0; }
    if (strcmp(cmd, "--version") == 0) ssm_cli_common_option(SSM_OPT_VERSION, NULL);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmds[i].name, cmd) == 0) return cmds[i].fn(argc - 1, argv + 1);
    ssm_usage_error("unknown command '%s'", cmd);
}
