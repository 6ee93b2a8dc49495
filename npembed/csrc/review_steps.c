/* The model Embedding(mask) -> average -> Dense(1) with sigmoid cross-entropy, trained as
 * fastText trains it: one step per review, in order, at rate lr (docs/gradients_appendix.md,
 * sections 5 and 6; per_review.reference_steps is the definition, kernels.review_sgd_reference /
 * review_adagrad_reference the NumPy twins).
 * Review b, its n masked-in positions t, label y, c_r of its positions holding row r:
 *     h = (1/n) sum_t E[ids[b, t]]    (double, rounded once)       z = h . k + c
 *     loss_b = max(z, 0) - z y + log1p(exp(-|z|))                   e = sigmoid(z) - y
 *     g_k = e h        g_c = e        g_r = c_r e k / n    (the old k)
 * logits[b] and losses[b] are those before review b's step. */
#include <math.h>

#include "kernels.h"

/* One past the last masked-in position of a review (0: none): padded batches pad each review
 * to the longest in the batch, and a step need not walk that tail twice. */
static inline int64_t masked_end(const uint8_t *row_mask, int64_t L)
{
    while (L > 0 && !row_mask[L - 1]) L--;
    return L;
}

/* forward of review b: h (D,) left in double (rounded to float first), z, the loss, e; returns
 * n.  count (V,) or NULL: counts the review's rows.  per_row (V,) or NULL: prefetched. */
static int64_t review_forward(const int64_t *row_ids, const uint8_t *row_mask, int64_t end, ReviewModel model,
                              int64_t V, int64_t D, float y, double *h, int32_t *count, const float *per_row,
                              float *logit, float *loss, float *e)
{
    const int64_t n = masked_row_total(row_ids, row_mask, end, model.table, V, D, h, 1, count, per_row);
    double z = 0.0;
    for (int64_t j = 0; j < D; j++) {
        const float hj = (float)(h[j] / (double)n);
        h[j] = (double)hj;
        z += (double)hj * (double)model.kernel[j];
    }
    const float out = (float)(z + (double)model.bias[0]);
    *logit = out;
    *loss = (out > 0 ? out : 0) - out * y + log1pf(expf(-(out > 0 ? out : -out)));
    *e = 1.0f / (1.0f + expf(-out)) - y;
    return n;
}

/* Plain SGD, fastText's own step:  dh = e k (the old k);  k -= lr e h;  c -= lr e;
 * E[ids[b, t]] -= lr dh / n at every masked-in t.  step: D floats of scratch. */
static void sgd_update(const int64_t *row_ids, const uint8_t *row_mask, int64_t end, ReviewModel model,
                       int64_t D, float rate, float e, int64_t n, const double *h, float *step)
{
    const float scale = rate * e, per_row = scale / (float)n;
    for (int64_t j = 0; j < D; j++) {
        step[j] = per_row * model.kernel[j];
        model.kernel[j] -= scale * (float)h[j];
    }
    model.bias[0] -= scale;
    for (int64_t t = 0; t < end; t++) {
        if (!row_mask[t]) continue;
        float *restrict w = model.table + row_ids[t] * D;
        for (int64_t j = 0; j < D; j++) w[j] -= step[j];
    }
}

void review_steps_sgd(const int64_t *ids, const uint8_t *mask, const float *labels, int64_t B,
                      int64_t L, ReviewModel model, int64_t V, int64_t D, float rate,
                      float *logits, float *losses, double *h, float *scratch)
{
    for (int64_t b = 0; b < B; b++) {
        const int64_t *row_ids = ids + b * L;
        const uint8_t *row_mask = mask + b * L;
        const int64_t end = masked_end(row_mask, L);
        float e;
        const int64_t n = review_forward(row_ids, row_mask, end, model, V, D, labels[b], h, NULL, NULL,
                                         logits + b, losses + b, &e);
        sgd_update(row_ids, row_mask, end, model, D, rate, e, n, h, scratch);
    }
}

/* Row-wise Adagrad (one accumulator per embedding row; element-wise for the Dense layer), with
 * u = e k / n (the old k):
 *     g_k = e h:    A_k += g_k * g_k;                 k -= lr g_k / (sqrt(A_k) + eps)
 *     g_c = e:      A_c += g_c * g_c;                 c -= lr g_c / (sqrt(A_c) + eps)
 *     g_r = c_r u:  A_r += c_r^2 q,  q = mean_j u_j^2;  E[r] -= lr g_r / (sqrt(A_r) + eps)
 * each distinct row once, at its first position.  q is summed in double and rounded once;
 * everything else is in float.  count (V,): review_forward's counts, left all 0.  u: D floats. */
static void adagrad_update(const int64_t *row_ids, const uint8_t *row_mask, int64_t end, ReviewModel model,
                           AdagradState acc, int32_t *count, int64_t D, float rate, float eps, float e,
                           int64_t n, const double *h, float *u)
{
    const float per_row = e / (float)n;
    double squares = 0.0;
    for (int64_t j = 0; j < D; j++) {
        u[j] = per_row * model.kernel[j];
        squares += (double)u[j] * (double)u[j];
        const float g = e * (float)h[j];
        acc.kernel[j] += g * g;
        model.kernel[j] -= rate * g / (sqrtf(acc.kernel[j]) + eps);
    }
    acc.bias[0] += e * e;
    model.bias[0] -= rate * e / (sqrtf(acc.bias[0]) + eps);
    const float q = (float)(squares / (double)D);
    for (int64_t t = 0; t < end; t++) {
        const int64_t id = row_ids[t];
        if (!row_mask[t] || count[id] == 0) continue;
        const float c = (float)count[id];
        count[id] = 0;                              /* later positions of this row: done */
        acc.table[id] += c * c * q;
        const float step = rate / (sqrtf(acc.table[id]) + eps);
        float *restrict w = model.table + id * D;
        for (int64_t j = 0; j < D; j++) w[j] -= step * (c * u[j]);
    }
}

void review_steps_adagrad(const int64_t *ids, const uint8_t *mask, const float *labels, int64_t B,
                          int64_t L, ReviewModel model, AdagradState acc, int32_t *count, int64_t V,
                          int64_t D, float rate, float eps, float *logits, float *losses, double *h,
                          float *scratch)
{
    for (int64_t b = 0; b < B; b++) {
        const int64_t *row_ids = ids + b * L;
        const uint8_t *row_mask = mask + b * L;
        const int64_t end = masked_end(row_mask, L);
        float e;
        const int64_t n = review_forward(row_ids, row_mask, end, model, V, D, labels[b], h, count, acc.table,
                                         logits + b, losses + b, &e);
        adagrad_update(row_ids, row_mask, end, model, acc, count, D, rate, eps, e, n, h, scratch);
    }
}
