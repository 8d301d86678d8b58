/* train_log.h - reading ssm-train's log (--log FILE) and drawing it as training curves.
 *
 * The log is either TSV with a header line
 *     step <TAB> split <TAB> loss <TAB> accuracy <TAB> lr <TAB> tokens_per_s <TAB> time_s
 * (columns found by name, so their order and extra columns do not matter; split is train|eval;
 * accuracy may be empty), or JSON lines with the same keys ({"step": 10, "split": "eval", ...};
 * null or a missing key is an empty value).  Required: step and loss.
 */
#ifndef SSM_TRAIN_LOG_H
#define SSM_TRAIN_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "plot.h"

typedef struct {
    int64_t n;                  /* records */
    double *step, *loss, *accuracy, *lr;   /* n each; NaN where empty */
    unsigned char *is_eval;     /* n: 1 for split=eval, 0 for train (or no split column) */
} ssm_train_log;

/* Parses text[0..len).  Returns 0, or -1 with a one-line message "label: line N: why" in err. */
int ssm_train_log_parse(const char *text, size_t len, const char *label, ssm_train_log *log, char *err, size_t errlen);
void ssm_train_log_free(ssm_train_log *log);

/* Loss (and, when any accuracy is present, accuracy) against step, train solid and eval dashed
 * with markers, side by side; logy puts the loss on a log axis.  title may be NULL. */
void ssm_draw_training_curves(ssm_figure *fig, const ssm_train_log *log, const char *title, int logy);

#endif
