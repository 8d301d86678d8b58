/* s4d_recurrent.h - the S4D / S4 models in inference mode with a recurrent state: a chunk of
 * tokens in parallel mode (FFT convolution) or one token per call (the recurrence), carrying the
 * state between calls.  Used by ssm-generate.  Math: ../shared/REFERENCE.md sections 4 and 6.
 *
 *     s4d_model *m = s4d_from_set(&checkpoint);          (model_s4d.h; n_classes == 0)
 *     s4d_rec *r = s4d_rec_new(m);                       (Abar, Bbar of every layer, once)
 *     s4d_state *s = s4d_state_new(r, batch);            (zeros = empty history)
 *     s4d_rec_forward(r, prompt, NULL, batch, Lp, s);    parallel mode, logits of every position
 *     s4d_rec_forward(r, &next, NULL, batch, 1, s);      one recurrent step, s updated in place
 *     const float *logits = s4d_rec_logits(r);           (batch, L, vocab_size) of the last call
 *
 * The block around the SSM (LayerNorm, GELU, Linear + GLU, residual, decoder) is pointwise in
 * time, so only the SSM layer carries history.  Dropout is off (inference).
 *
 * ---- the layer interface (S4D's diagonal step here; S4's DPLR step plugs in the same way) ----
 * One SSM layer maps u -> y channel by channel (H channels, y includes the skip D u).  Its
 * state is S floats per channel, float32 whatever the weights are: state (batch, H, S).
 *   step:  one token, u (batch, H) -> y (batch, H); the state is advanced in place and y is read
 *          from the new state (REFERENCE 6: x <- Abar x + Bbar u, y = 2 Re(C x) + D u).
 *   chunk: optional (NULL: step is called L times): L tokens at once, u and y (batch, H, L) (the
 *          layout of the model's convolution), starting from state and leaving in it the state
 *          after the last token.  Must equal L calls of step to float32 rounding.
 *   free_ctx: frees ctx (may be NULL).
 * A layer kind provides a constructor returning an ssm_rec_layer from the trained parameters
 * (s4d_rec_layer_new below), and s4d_rec_new picks the constructor per layer from the parameters
 * present (make_layer in s4d_recurrent.c).  How S4 plugs in:
 *   - write ssm_rec_layer s4_rec_layer_new(H, M, R, log_dt, Lambda_real_log, Lambda_imag, P, B,
 *     C_tilde, D, L_train) next to s4_step.{c,h}: ctx = the S4 step setup (per channel, made once),
 *     S = the floats of one channel's state (2M for M complex modes), step = for each (b, h):
 *     y[b*H+h] = s4 step of channel h on state + (b*H+h)*S with input u[b*H+h] (D u included),
 *     chunk = NULL (the prompt then runs as steps, exact) or a Cauchy-kernel convolution plus the
 *     state at the chunk's end, free_ctx = its free;
 *   - in make_layer add: if "layers.{i}.ssm.Lambda_real_log" is present, return s4_rec_layer_new.
 * ssm-generate then runs model=s4 checkpoints unchanged (states saved as c64 (batch, H, S/2)).
 */
#ifndef SSM_S4D_RECURRENT_H
#define SSM_S4D_RECURRENT_H

#include <stdint.h>
#include "model_s4d.h"

typedef struct ssm_rec_layer {
    int64_t H;   /* channels */
    int64_t S;   /* floats of state per channel (S4D: 2 M, the M complex modes as (re, im)) */
    void *ctx;
    void (*step)(void *ctx, int64_t batch, float *state, const float *u, float *y);
    void (*chunk)(void *ctx, int64_t batch, int64_t L, float *state, const float *u, float *y);
    void (*free_ctx)(void *ctx);
} ssm_rec_layer;

/* The S4D layer (ZOH, as the kernel of model_s4d): log_dt (H), A_real_log, A_imag (H, M),
 * B, C (H, M) complex (re, im) pairs, D (H).  A = -exp(A_real_log) + i A_imag;
 * Abar = exp(dt A), Bbar = (exp(dt A) - 1)/A B, computed once here (in double, stored f32).
 * State: M complex modes per channel (S = 2M).  chunk: FFT convolution with the kernel
 * (s4d_kernel_forward_f32, as training), plus the response to the initial state
 * 2 Re sum_m C_m Abar_m^(t+1) x0_m, and the final state Abar^L x0 + sum_t Abar^(L-1-t) Bbar u_t
 * (per mode, accumulated in double). */
ssm_rec_layer s4d_rec_layer_new(int64_t H, int64_t M, const float *log_dt, const float *A_real_log,
                                const float *A_imag, const float *B, const float *C, const float *D);
void ssm_rec_layer_free(ssm_rec_layer *l);
/* Runs l->chunk, or l->step once per token when the layer has no chunk (u, y (batch, H, L)). */
void ssm_rec_layer_run(const ssm_rec_layer *l, int64_t batch, int64_t L, float *state, const float *u,
                       float *y);

/* The whole model's recurrent state: x[i] (batch, H, S_i) float32 for layer i. */
typedef struct {
    int batch, n_layers;
    int64_t H;
    int64_t *S;        /* [n_layers] floats of state per channel */
    float **x;         /* [n_layers] -> (batch, H, S[i]) */
} s4d_state;

typedef struct s4d_rec s4d_rec;
s4d_rec *s4d_rec_new(s4d_model *m);     /* m must outlive r (its parameters are read per call) */
void s4d_rec_free(s4d_rec *r);
/* Replaces layer i (r takes ownership; the old one is freed): how a layer kind not known to
 * make_layer, or a test, plugs in. */
void s4d_rec_set_layer(s4d_rec *r, int i, ssm_rec_layer layer);
const ssm_rec_layer *s4d_rec_layer(const s4d_rec *r, int i);

s4d_state *s4d_state_new(const s4d_rec *r, int batch);   /* zeros */
void s4d_state_reset(s4d_state *s);
void s4d_state_free(s4d_state *s);

/* Forward over (batch, L) tokens (or features (batch, L, d_input)) from the history in s; s is
 * overwritten with the history after the last token.  L == 1: one recurrent step per layer;
 * L > 1: parallel mode (each layer's chunk).  Dies on a token out of range. */
void s4d_rec_forward(s4d_rec *r, const int32_t *tokens, const float *features, int batch, int L, s4d_state *s);
const float *s4d_rec_logits(const s4d_rec *r);   /* (batch, L, vocab_size) of the last call */

#endif
