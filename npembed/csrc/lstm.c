/* One LSTM direction's recurrence over packed steps: the per-step loops of
 * recurrent_fast.forward_steps / backward_steps (their NumPy code is the reference, and
 * recurrent_fast's docstring explains the layout), forward and backward side by side.
 *
 * Shapes: N packed (step, review) pairs, J steps, U units, G = 4U gate columns in the fused
 * order i, f, o, g.  offsets (J+1,): step j's pairs are rows offsets[j] .. offsets[j+1]-1, and
 * their counts never grow (the reviews are sorted longest first), so row r of step j continues
 * row r of step j-1.  Row N of states and cells is the zero state before step 0.
 *
 * The same float32 operations in the same order as the NumPy reference, element by element;
 * only the recurrent product sums in another order (k = 0, 1, ... onto the input projection)
 * and tanh is tanh_in_place's, so the two agree within a bound, not bit for bit
 * (tests/test_lstm_kernels.py). */
#include <string.h>

#include "kernels.h"

#define TILE_ROWS 6      /* rows of out sharing each loaded row of b: 12 sums + 2 of b + 1 = 15 AVX registers */

/* Eight floats in one AVX register (GCC's vector extension: gcc's auto-vectorizer packs the
 * tile below along the wrong loop).  Arithmetic on it is element-wise IEEE float32, as on
 * plain floats; without AVX the compiler splits it in two SSE halves. */
typedef float float8 __attribute__((vector_size(32)));

static float8 load8(const float *p) { float8 v; memcpy(&v, p, sizeof v); return v; }
static void store8(float *p, float8 v) { memcpy(p, &v, sizeof v); }

/* out (6, M) += a (6, K) @ b (K, M) on columns [col, col + 16): the tile's 6 x 16 sums stay in
 * twelve registers for the whole k loop, each in the order k = 0, 1, ... */
static void product_tile(float *restrict out, const float *restrict a, int64_t K, const float *restrict b,
                         int64_t M, int64_t col)
{
    float8 acc[TILE_ROWS][2];
    for (int r = 0; r < TILE_ROWS; r++)
        for (int half = 0; half < 2; half++) acc[r][half] = load8(out + r * M + col + 8 * half);
    for (int64_t k = 0; k < K; k++) {
        const float8 left = load8(b + k * M + col), right = load8(b + k * M + col + 8);
        for (int r = 0; r < TILE_ROWS; r++) {
            const float x = a[r * K + k];
            acc[r][0] += x * left;
            acc[r][1] += x * right;
        }
    }
    for (int r = 0; r < TILE_ROWS; r++)
        for (int half = 0; half < 2; half++) store8(out + r * M + col + 8 * half, acc[r][half]);
}

/* out (1, M) += a (1, K) @ b (K, M) on columns [first, M): the rows and columns left over. */
static void product_row(float *restrict out, const float *restrict a, int64_t K, const float *restrict b,
                        int64_t M, int64_t first)
{
    for (int64_t k = 0; k < K; k++) {
        const float x = a[k];
        for (int64_t c = first; c < M; c++) out[c] += x * b[k * M + c];
    }
}

/* out (n, M) += a (n, K) @ b (K, M), row-major, in register tiles of 6 x 16 (one step's
 * (64, 64) @ (64, 256) measured 40-52 us here, against 72 with tiles of 4 x 16). */
static void add_product(float *out, const float *a, int64_t n, int64_t K, const float *b, int64_t M)
{
    const int64_t full_cols = M - M % 16;
    int64_t r = 0;
    for (; r + TILE_ROWS <= n; r += TILE_ROWS) {
        for (int64_t col = 0; col < full_cols; col += 16)
            product_tile(out + r * M, a + r * K, K, b, M, col);
        for (int i = 0; i < TILE_ROWS; i++) product_row(out + (r + i) * M, a + (r + i) * K, K, b, M, full_cols);
    }
    for (; r < n; r++) product_row(out + r * M, a + r * K, K, b, M, 0);
}

/* v (n,) <- tanh(v), in double: y P(y^2) / Q(y^2), the 14th convergent of Lambert's continued
 * fraction tanh y = y / (1 + y^2 / (3 + y^2 / (5 + ...))), whose integer coefficients (exact in
 * double) are all positive, so Horner's rule adds no cancellation.  On |y| <= 9.2 it is within
 * 3.6e-10 relative of tanh (0.006 float32 ulps); beyond, tanh rounds to +-1 in float32 and y is
 * clamped to +-9.2f.  So the float32 result is tanh correctly rounded but for inputs within
 * 0.006 ulp of a halfway point: within 1 ulp everywhere (checked on all 2^32 float32 inputs
 * against libm's double tanh: 0.5041 ulp at worst, docs/rnn.md); glibc's tanhf is scalar and
 * cost 16-24 ns a call here.  NaN stays NaN (the clamp's comparisons are false), -0 stays -0. */
__attribute__((optimize("no-trapping-math")))    /* lets gcc vectorize the clamp; no value changes */
static void tanh_in_place(float *restrict v, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        float x = v[k];
        x = x > 9.2f ? 9.2f : x;
        x = x < -9.2f ? -9.2f : x;
        const double y = x, s = y * y;
        const double p = ((((((s + 7140.0) * s + 7936110.0) * s + 3055402350.0) * s + 496939367925.0) * s
                           + 34785755754750.0) * s + 924984868933125.0) * s + 6190283353629375.0;
        const double q = ((((((120.0 * s + 278460.0) * s + 174594420.0) * s + 43212118950.0) * s
                            + 4638100767300.0) * s + 205552193096250.0) * s + 2988412653476250.0) * s
                         + 6190283353629375.0;
        v[k] = (float)(y * p / q);
    }
}

/* One pair's gates and state, forward.  z (G,): z/2 on the sigmoid columns, z on g, becomes
 * [i, f, o, g]; c_prev (U,) -> c (U,), tanh_c (U,), h (U,).
 *     [i f o] = (1 + tanh(z/2)) / 2;  g = tanh(z_g);  c = f c_prev + i g;  h = o tanh(c) */
static void cell_forward(float *restrict z, const float *restrict c_prev, int64_t U, float *restrict c,
                         float *restrict tanh_c, float *restrict h)
{
    tanh_in_place(z, 4 * U);
    for (int64_t k = 0; k < 3 * U; k++) z[k] = z[k] * 0.5f + 0.5f;
    const float *i = z, *f = z + U, *o = z + 2 * U, *g = z + 3 * U;
    for (int64_t u = 0; u < U; u++) {
        c[u] = f[u] * c_prev[u];
        c[u] += i[u] * g[u];
        tanh_c[u] = c[u];
    }
    tanh_in_place(tanh_c, U);
    for (int64_t u = 0; u < U; u++) h[u] = o[u] * tanh_c[u];
}

/* One pair's gates, backward.  a (G,): [i, f, o, g] -> dz; dh, dc (U,): dL/dh, dL/dc of this
 * step on entry, dc becomes dL/dc_prev; d_state (U,) or NULL: dL/dh from outside the recurrence.
 *     do = dh tanh(c);  dc += dh o (1 - tanh(c)^2);  di = dc g;  df = dc c_prev;  dg = dc i
 *     dz = [di i(1-i), df f(1-f), do o(1-o), dg (1-g^2)];  dc_prev = dc f */
static void cell_backward(float *restrict a, const float *restrict c_prev, const float *restrict tanh_c,
                          const float *restrict d_state, float *restrict dh, float *restrict dc, int64_t U)
{
    float *i = a, *f = a + U, *o = a + 2 * U, *g = a + 3 * U;
    for (int64_t u = 0; u < U; u++) {
        if (d_state) dh[u] += d_state[u];
        dc[u] += dh[u] * o[u] * (1.0f - tanh_c[u] * tanh_c[u]);
        const float d_o = dh[u] * tanh_c[u], d_i = dc[u] * g[u], d_g = dc[u] * i[u], d_f = dc[u] * c_prev[u];
        dc[u] *= f[u];
        g[u] = d_g * (1.0f - g[u] * g[u]);
        i[u] = i[u] * (1.0f - i[u]) * d_i;
        f[u] = f[u] * (1.0f - f[u]) * d_f;
        o[u] = o[u] * (1.0f - o[u]) * d_o;
    }
}

/* forward: gates (N, G) holds x W + b on entry (halved on the sigmoid columns, as recurrent
 * (U, G) is) and [i, f, o, g] on exit; writes states, cells (N+1, U) (row N: zero, left as is)
 * and tanh_cells (N, U).  Step j: z = gates[j] + h_{j-1} R, then cell_forward per pair. */
void lstm_forward(float *gates, const float *recurrent, const int64_t *offsets, int64_t J, int64_t N,
                  int64_t U, float *states, float *cells, float *tanh_cells)
{
    const int64_t G = 4 * U;
    for (int64_t j = 0; j < J; j++) {
        const int64_t begin = offsets[j], n = offsets[j + 1] - begin, prev = j ? offsets[j - 1] : N;
        if (j) add_product(gates + begin * G, states + prev * U, n, U, recurrent, G);
        for (int64_t r = 0; r < n; r++) {
            const int64_t p = begin + r, q = j ? prev + r : N;
            cell_forward(gates + p * G, cells + q * U, U, cells + p * U, tanh_cells + p * U, states + p * U);
        }
    }
}

/* backward: gates (N, G) holds [i, f, o, g] on entry and dz on exit; recurrent_t (G, U) = R^T
 * (not halved); cells (N+1, U), tanh_cells (N, U) from lstm_forward; d_states (N, U) or NULL;
 * dh, dc (B, U), B >= offsets[1]: row r the r-th sorted review's dL/dh (its final state's
 * gradient, waiting until its last step) and dL/dc (zero on entry); both are overwritten.
 * Step j, last to first: cell_backward per pair, then dh_{j-1} = dz R^T. */
void lstm_backward(float *gates, const float *recurrent_t, const float *cells, const float *tanh_cells,
                   const float *d_states, const int64_t *offsets, int64_t J, int64_t N, int64_t U,
                   float *dh, float *dc)
{
    const int64_t G = 4 * U;
    for (int64_t j = J - 1; j >= 0; j--) {
        const int64_t begin = offsets[j], n = offsets[j + 1] - begin, prev = j ? offsets[j - 1] : N;
        for (int64_t r = 0; r < n; r++) {
            const int64_t p = begin + r, q = j ? prev + r : N;
            cell_backward(gates + p * G, cells + q * U, tanh_cells + p * U, d_states ? d_states + p * U : NULL,
                          dh + r * U, dc + r * U, U);
        }
        if (!j) break;                                  /* dh before step 0 is not needed */
        memset(dh, 0, (size_t)(n * U) * sizeof(float));
        add_product(dh, gates + begin * G, n, G, recurrent_t, U);
    }
}
