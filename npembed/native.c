/* The training step's hot loops in C, and the data pipeline's tokenizer: the "native" kernel
 * backend (see npembed/native.py).
 *
 * NumPy runs one pass over memory per operation: Keras's Adam on the 8185 x 16 table is ten
 * passes over 131,000 entries, and every call costs microseconds before it starts.  Here each
 * hot path is one loop that reads every entry once.  npembed/kernels.py holds the NumPy
 * version of each and the tests hold these to them (bit for bit for Adam).
 *
 * Exactness: built with -ffp-contract=off (no fused multiply-add: Keras rounds the product
 * and the sum separately) and without -ffast-math, so every operation is IEEE, in the
 * weights' type, in the order Keras writes it.  -fno-math-errno only lets the compiler use
 * the sqrt instruction (vectorised, correctly rounded) without a call for errno's sake.
 *
 * Arrays arrive through the buffer protocol ("w*": writable, "y*": read-only); both demand a
 * C-contiguous buffer.  npembed/native.py checks dtypes and shapes before calling; the
 * functions here check buffer sizes again, so that a wrong call raises instead of writing
 * out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int need(const Py_buffer *buf, Py_ssize_t bytes, const char *name)
{
    if (buf->len < bytes) {
        PyErr_Format(PyExc_ValueError, "npembed native kernel: buffer %s holds %zd bytes, needs %zd",
                     name, buf->len, bytes);
        return 0;
    }
    return 1;
}

/* Ask for the cache lines of [p, p + bytes) ahead of use: a big table's rows are far apart,
 * and a loop that waits for each row in turn spends most of its time waiting. */
#define PREFETCH_AHEAD 16
static inline void prefetch(const void *p, int64_t bytes, int for_write)
{
    for (int64_t offset = 0; offset < bytes; offset += 64) {
        if (for_write) __builtin_prefetch((const char *)p + offset, 1);
        else __builtin_prefetch((const char *)p + offset, 0);
    }
}

/* One past the last masked-in position of a review's mask (0: none): padded batches pad each
 * review to the longest in the batch, often several times its length, and the per-review
 * steps need not walk that tail twice. */
static inline int64_t masked_end(const uint8_t *row_mask, int64_t length)
{
    while (length > 0 && !row_mask[length - 1]) length--;
    return length;
}

/* Prefetch one row of Adam's weight, m and v (each dim values of `item` bytes, `offset` values
 * into their tables), all three about to be written. */
static inline void prefetch_adam_row(const void *w, const void *m, const void *v, int64_t offset,
                                     int64_t dim, int64_t item)
{
    prefetch((const char *)w + offset * item, dim * item, 1);
    prefetch((const char *)m + offset * item, dim * item, 1);
    prefetch((const char *)v + offset * item, dim * item, 1);
}

static void release(Py_buffer *bufs, int n)
{
    for (int i = 0; i < n; i++)
        if (bufs[i].obj) PyBuffer_Release(&bufs[i]);
}

/* ------------------------------------------------------------------ row counts per review
 * Review b holds row pair_rows[p] at pair_counts[p] unmasked positions, p in offsets[b] ..
 * offsets[b+1], rows in order of first appearance.  A row seen only at masked positions is
 * listed with count 0 (TensorFlow's IndexedSlices list it too).  counter (V,) is all zero on
 * entry and exit; while review b is counted, a row it holds has 1 + its count there.  A run
 * of one row (the padding) is counted in a register. */
#define COUNT_REVIEW_ROWS(NAME, ID_T)                                                          \
static void NAME(const ID_T *ids, const uint8_t *mask, int64_t batch, int64_t length,          \
                 int32_t *counter, int64_t *pair_rows, int64_t *pair_counts, int64_t *offsets) \
{                                                                                              \
    int64_t pairs = 0;                                                                         \
    for (int64_t b = 0; b < batch; b++) {                                                      \
        const ID_T *row_ids = ids + b * length;                                                \
        const uint8_t *row_mask = mask ? mask + b * length : NULL;                             \
        offsets[b] = pairs;                                                                    \
        int64_t run_row = row_ids[0], run = 0;                                                 \
        for (int64_t t = 0; t <= length; t++) {                                                \
            if (t + 16 < length) __builtin_prefetch(&counter[row_ids[t + 16]], 1);             \
            if (t < length && row_ids[t] == run_row) {                                         \
                run += row_mask ? row_mask[t] != 0 : 1;                                        \
                continue;                                                                      \
            }                                                                                  \
            int64_t is_new = counter[run_row] == 0;   /* branch-free: hard to predict */       \
            pair_rows[pairs] = run_row;                                                        \
            pairs += is_new;                                                                   \
            counter[run_row] += run + is_new;                                                  \
            if (t < length) {                                                                  \
                run_row = row_ids[t];                                                          \
                run = row_mask ? row_mask[t] != 0 : 1;                                         \
            }                                                                                  \
        }                                                                                      \
        for (int64_t p = offsets[b]; p < pairs; p++) {                                         \
            pair_counts[p] = counter[pair_rows[p]] - 1;                                        \
            counter[pair_rows[p]] = 0;                                                         \
        }                                                                                      \
    }                                                                                          \
    offsets[batch] = pairs;                                                                    \
}
COUNT_REVIEW_ROWS(count_review_rows_i32, int32_t)
COUNT_REVIEW_ROWS(count_review_rows_i64, int64_t)

/* The position of the first id outside [0, num_rows), or -1: checked before any id is used as
 * an index (one branch-free pass, a vector compare and an or). */
#define FIRST_BAD_ID(NAME, ID_T)                                                               \
static int64_t NAME(const ID_T *ids, int64_t n, int64_t num_rows)                              \
{                                                                                              \
    uint64_t bad = 0;                                                                          \
    for (int64_t i = 0; i < n; i++) bad |= (uint64_t)(int64_t)ids[i] >= (uint64_t)num_rows;    \
    if (!bad) return -1;                                                                       \
    for (int64_t i = 0; i < n; i++)                                                            \
        if ((uint64_t)(int64_t)ids[i] >= (uint64_t)num_rows) return i;                         \
    return -1;                                                                                 \
}
FIRST_BAD_ID(first_bad_id_i32, int32_t)
FIRST_BAD_ID(first_bad_id_i64, int64_t)

/* count_review_rows(ids, mask or None, counter, pair_rows, pair_counts, offsets, batch,
 *                   length, num_rows, ids_itemsize) */
static PyObject *py_count_review_rows(PyObject *self, PyObject *args)
{
    Py_buffer b[6] = {{0}};
    PyObject *mask_obj;
    Py_ssize_t batch, length, num_rows, id_size;
    if (!PyArg_ParseTuple(args, "y*Ow*w*w*w*nnnn", &b[0], &mask_obj, &b[2], &b[3], &b[4], &b[5],
                          &batch, &length, &num_rows, &id_size))
        return NULL;
    int ok = (id_size == 4 || id_size == 8) && batch > 0 && length > 0;
    if (!ok) PyErr_SetString(PyExc_ValueError, "count_review_rows: bad ids item size or shape");
    if (ok && mask_obj != Py_None) {
        ok = PyObject_GetBuffer(mask_obj, &b[1], PyBUF_SIMPLE) == 0 && need(&b[1], batch * length, "mask");
    }
    ok = ok && need(&b[0], batch * length * id_size, "ids") && need(&b[2], num_rows * 4, "counter")
         && need(&b[3], batch * length * 8, "pair_rows") && need(&b[4], batch * length * 8, "pair_counts")
         && need(&b[5], (batch + 1) * 8, "offsets");
    if (ok) {
        int64_t bad = id_size == 4 ? first_bad_id_i32(b[0].buf, batch * length, num_rows)
                                   : first_bad_id_i64(b[0].buf, batch * length, num_rows);
        if (bad >= 0) {
            long long id = id_size == 4 ? ((const int32_t *)b[0].buf)[bad] : ((const int64_t *)b[0].buf)[bad];
            PyErr_Format(PyExc_ValueError, "token id %lld at position (%lld, %lld) is outside [0, %zd)",
                         id, (long long)(bad / length), (long long)(bad % length), num_rows);
            ok = 0;
        }
    }
    if (ok) {
        const uint8_t *mask = mask_obj != Py_None ? b[1].buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        if (id_size == 4)
            count_review_rows_i32(b[0].buf, mask, batch, length, b[2].buf, b[3].buf, b[4].buf, b[5].buf);
        else
            count_review_rows_i64(b[0].buf, mask, batch, length, b[2].buf, b[3].buf, b[4].buf, b[5].buf);
        Py_END_ALLOW_THREADS
    }
    release(b, 6);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ pooled embedding
 * out[b] = sum_p count_p * table[row_p] / n[b] over review b's pairs, n[b] its token count
 * (or `length` when positive: the unmasked average over the padded length), summed in double
 * and rounded once; lengths[b] = n[b].  A count times a float is exact in double. */
#define POOLED_SUM(NAME, REAL)                                                                 \
static void NAME(const REAL *table, const int64_t *pair_rows, const int64_t *pair_counts,      \
                 const int64_t *offsets, int64_t batch, int64_t dim, int64_t length,           \
                 REAL *out, int64_t *lengths, double *restrict total)                          \
{                                                                                              \
    for (int64_t b = 0; b < batch; b++) {                                                      \
        int64_t tokens = 0;                                                                    \
        for (int64_t j = 0; j < dim; j++) total[j] = 0.0;                                      \
        for (int64_t p = offsets[b]; p < offsets[b + 1]; p++) {                                \
            if (p + PREFETCH_AHEAD < offsets[batch])                                           \
                prefetch(table + pair_rows[p + PREFETCH_AHEAD] * dim, dim * sizeof(REAL), 0);  \
            const double count = (double)pair_counts[p];                                       \
            const REAL *restrict values = table + pair_rows[p] * dim;                          \
            tokens += pair_counts[p];                                                          \
            for (int64_t j = 0; j < dim; j++) total[j] += count * (double)values[j];           \
        }                                                                                      \
        lengths[b] = tokens;                                                                   \
        const double denominator = length > 0 ? (double)length : (double)(tokens > 0 ? tokens : 1); \
        for (int64_t j = 0; j < dim; j++) out[b * dim + j] = (REAL)(total[j] / denominator);   \
    }                                                                                          \
}
POOLED_SUM(pooled_sum_f32, float)
POOLED_SUM(pooled_sum_f64, double)

/* pooled_sum(table, pair_rows, pair_counts, offsets, out, lengths, num_rows, batch, dim,
 *            length, itemsize) */
static PyObject *py_pooled_sum(PyObject *self, PyObject *args)
{
    Py_buffer b[6] = {{0}};
    Py_ssize_t num_rows, batch, dim, length, item;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*nnnnn", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                          &num_rows, &batch, &dim, &length, &item))
        return NULL;
    int ok = (item == 4 || item == 8) && dim > 0;
    if (!ok) PyErr_SetString(PyExc_ValueError, "pooled_sum: bad item size or width");
    ok = ok && need(&b[0], num_rows * dim * item, "table") && need(&b[3], (batch + 1) * 8, "offsets")
         && need(&b[4], batch * dim * item, "out") && need(&b[5], batch * 8, "lengths");
    if (ok) {
        int64_t pairs = ((const int64_t *)b[3].buf)[batch];
        ok = need(&b[1], pairs * 8, "pair_rows") && need(&b[2], pairs * 8, "pair_counts");
    }
    double *total = ok ? malloc(dim * sizeof(double)) : NULL;
    if (ok && !total) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        if (item == 4)
            pooled_sum_f32(b[0].buf, b[1].buf, b[2].buf, b[3].buf, batch, dim, length, b[4].buf, b[5].buf, total);
        else
            pooled_sum_f64(b[0].buf, b[1].buf, b[2].buf, b[3].buf, batch, dim, length, b[4].buf, b[5].buf, total);
        Py_END_ALLOW_THREADS
    }
    free(total);
    release(b, 6);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ its gradient, per row
 * The distinct rows (ascending) and per row the sum of its slices and of their squares, where
 * a position of review b sends row_gradient[b]: sums[k] = sum count * g and squares[k] =
 * sum count * (g * g), the square taken in the gradient's type as TensorFlow squares each
 * slice, each sum taken in double and rounded once.  slot (V,) is all -1 between calls. */

/* Sort n row numbers in [0, num_rows) ascending: least-significant-digit radix sort, 11 bits
 * a pass (two passes for a million rows), through tmp (n entries). */
static void sort_rows(int64_t *rows, int64_t *tmp, int64_t n, int64_t num_rows)
{
    enum { BITS = 11, BUCKETS = 1 << BITS };
    int64_t starts[BUCKETS];
    for (int shift = 0; shift < 63 && (num_rows - 1) >> shift; shift += BITS) {
        memset(starts, 0, sizeof starts);
        for (int64_t i = 0; i < n; i++) starts[(rows[i] >> shift) & (BUCKETS - 1)]++;
        for (int64_t d = 0, start = 0; d < BUCKETS; d++) {
            int64_t c = starts[d];
            starts[d] = start;
            start += c;
        }
        for (int64_t i = 0; i < n; i++) tmp[starts[(rows[i] >> shift) & (BUCKETS - 1)]++] = rows[i];
        memcpy(rows, tmp, n * sizeof(int64_t));
    }
}

/* Phase 1: the distinct rows, ascending, into rows[:U]; returns U.  Leaves slot[rows[k]] = k
 * and single[k] = 1 when row k is held by exactly one review (one pair), for phase 2. */
static int64_t distinct_rows(const int64_t *pair_rows, int64_t pairs, int32_t *slot, int64_t num_rows,
                             int scan_table, int64_t *rows, uint8_t *single)
{
    int64_t distinct = 0;
    for (int64_t p = 0; p < pairs; p++) {          /* branch-free, as in count_review_rows */
        if (p + 16 < pairs) __builtin_prefetch(&slot[pair_rows[p + 16]], 1);
        rows[distinct] = pair_rows[p];
        distinct += slot[pair_rows[p]] == -1;
        slot[pair_rows[p]] -= 1;                   /* -1 - (number of pairs holding the row) */
    }
    if (scan_table) {
        int64_t k = 0;
        for (int64_t row = 0; row < num_rows && k < distinct; row++) {
            rows[k] = row;
            k += slot[row] != -1;
        }
    } else {
        sort_rows(rows, rows + distinct, distinct, num_rows);
    }
    for (int64_t k = 0; k < distinct; k++) {
        single[k] = slot[rows[k]] == -2;
        slot[rows[k]] = (int32_t)k;
    }
    return distinct;
}

/* Phase 2: sums[k] and squares[k] (U, dim each, in REAL) for the rows of phase 1.  A row held
 * by one review is count * g, computed in double and rounded once, straight into the output;
 * a row held by several is summed in double in acc first (its first pair sets it).  Restores
 * slot to all -1. */
#define ROW_SUMS(NAME, REAL)                                                                   \
static void NAME(const int64_t *pair_rows, const int64_t *pair_counts, const int64_t *offsets, \
                 const REAL *row_gradient, int64_t batch, int64_t dim, int32_t *slot,          \
                 const int64_t *rows, int64_t distinct, const uint8_t *single, double *acc,    \
                 uint8_t *started, REAL *sums, REAL *squares)                                  \
{                                                                                              \
    memset(started, 0, distinct);                                                              \
    for (int64_t b = 0; b < batch; b++) {                                                      \
        const REAL *restrict g = row_gradient + b * dim;                                       \
        for (int64_t p = offsets[b]; p < offsets[b + 1]; p++) {                                \
            const double count = (double)pair_counts[p];                                       \
            const int64_t k = slot[pair_rows[p]];                                              \
            if (single[k]) {                                                                   \
                REAL *restrict sum = sums + k * dim, *restrict square = squares + k * dim;     \
                for (int64_t j = 0; j < dim; j++) {                                            \
                    sum[j] = (REAL)(count * (double)g[j]);                                     \
                    square[j] = (REAL)(count * (double)(REAL)(g[j] * g[j]));                   \
                }                                                                              \
                continue;                                                                      \
            }                                                                                  \
            double *restrict row_acc = acc + k * 2 * dim;          /* [sum | squares] */       \
            for (int64_t j = 0; j < dim; j++) {                                                \
                const double add_sum = count * (double)g[j];                                   \
                const double add_square = count * (double)(REAL)(g[j] * g[j]);                 \
                row_acc[j] = started[k] ? row_acc[j] + add_sum : add_sum;                      \
                row_acc[dim + j] = started[k] ? row_acc[dim + j] + add_square : add_square;    \
            }                                                                                  \
            started[k] = 1;                                                                    \
        }                                                                                      \
    }                                                                                          \
    for (int64_t k = 0; k < distinct; k++) {                                                   \
        slot[rows[k]] = -1;                                                                    \
        if (single[k]) continue;                                                               \
        for (int64_t j = 0; j < dim; j++) {                                                    \
            sums[k * dim + j] = (REAL)acc[k * 2 * dim + j];                                    \
            squares[k * dim + j] = (REAL)acc[k * 2 * dim + dim + j];                           \
        }                                                                                      \
    }                                                                                          \
}
ROW_SUMS(row_sums_f32, float)
ROW_SUMS(row_sums_f64, double)

/* distinct_rows(pair_rows, offsets, slot, rows, single, batch, num_rows, scan_table) -> U
 * rows: room for 2 * pairs entries (the second half is the sort's scratch); single: pairs. */
static PyObject *py_distinct_rows(PyObject *self, PyObject *args)
{
    Py_buffer b[5] = {{0}};
    Py_ssize_t batch, num_rows;
    int scan_table;
    if (!PyArg_ParseTuple(args, "y*y*w*w*w*nnp", &b[0], &b[1], &b[2], &b[3], &b[4], &batch, &num_rows,
                          &scan_table))
        return NULL;
    int ok = batch > 0 && need(&b[1], (batch + 1) * 8, "offsets") && need(&b[2], num_rows * 4, "slot");
    int64_t pairs = ok ? ((const int64_t *)b[1].buf)[batch] : 0, distinct = 0;
    ok = ok && need(&b[0], pairs * 8, "pair_rows") && need(&b[3], 2 * pairs * 8, "rows")
         && need(&b[4], pairs, "single");
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        distinct = distinct_rows(b[0].buf, pairs, b[2].buf, num_rows, scan_table, b[3].buf, b[4].buf);
        Py_END_ALLOW_THREADS
    }
    release(b, 5);
    if (!ok) return NULL;
    return PyLong_FromLongLong(distinct);
}

/* row_sums(pair_rows, pair_counts, offsets, row_gradient, slot, rows, single, acc, sums,
 *          squares, batch, dim, distinct, itemsize): phase 2, after distinct_rows.
 * acc: doubles for distinct * 2 * dim; sums, squares: distinct * dim entries each. */
static PyObject *py_row_sums(PyObject *self, PyObject *args)
{
    Py_buffer b[10] = {{0}};
    Py_ssize_t batch, dim, distinct, item;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*y*y*w*w*w*nnnn", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                          &b[6], &b[7], &b[8], &b[9], &batch, &dim, &distinct, &item))
        return NULL;
    int ok = (item == 4 || item == 8) && dim > 0 && batch > 0 && distinct >= 0;
    if (!ok) PyErr_SetString(PyExc_ValueError, "row_sums: bad item size or shape");
    ok = ok && need(&b[2], (batch + 1) * 8, "offsets") && need(&b[3], batch * dim * item, "row_gradient");
    int64_t pairs = ok ? ((const int64_t *)b[2].buf)[batch] : 0;
    ok = ok && need(&b[0], pairs * 8, "pair_rows") && need(&b[1], pairs * 8, "pair_counts")
         && need(&b[5], distinct * 8, "rows") && need(&b[6], distinct, "single")
         && need(&b[7], distinct * 2 * dim * 8, "acc") && need(&b[8], distinct * dim * item, "sums")
         && need(&b[9], distinct * dim * item, "squares");
    uint8_t *started = ok ? malloc(distinct + 1) : NULL;
    if (ok && !started) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        if (item == 4)
            row_sums_f32(b[0].buf, b[1].buf, b[2].buf, b[3].buf, batch, dim, b[4].buf, b[5].buf,
                         distinct, b[6].buf, b[7].buf, started, b[8].buf, b[9].buf);
        else
            row_sums_f64(b[0].buf, b[1].buf, b[2].buf, b[3].buf, batch, dim, b[4].buf, b[5].buf,
                         distinct, b[6].buf, b[7].buf, started, b[8].buf, b[9].buf);
        Py_END_ALLOW_THREADS
    }
    free(started);
    release(b, 10);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ Adam
 * Keras's update of one entry, operation by operation (kernels.adam_update_reference):
 *     m += (g - m) * c1;   v += (S - v) * c2;   w -= m * alpha / (sqrt(v) + eps)
 * With a zero gradient Keras computes m + (0 - m) * c1; m - m * c1 is the same number
 * (negation commutes with IEEE rounding), and likewise for v. */
#define ADAM(SUFFIX, REAL, SQRT)                                                               \
static inline void adam_span_##SUFFIX(REAL *restrict w, REAL *restrict m, REAL *restrict v,    \
        const REAL *restrict g, const REAL *restrict s, int64_t n,                             \
        REAL alpha, REAL c1, REAL c2, REAL eps)                                                \
{                                                                                              \
    for (int64_t i = 0; i < n; i++) {                                                          \
        const REAL new_m = m[i] + (g[i] - m[i]) * c1;                                          \
        const REAL new_v = v[i] + ((s ? s[i] : g[i] * g[i]) - v[i]) * c2;                      \
        m[i] = new_m;                                                                          \
        v[i] = new_v;                                                                          \
        w[i] -= new_m * alpha / (SQRT(new_v) + eps);                                           \
    }                                                                                          \
}                                                                                              \
static inline void adam_decay_span_##SUFFIX(REAL *restrict w, REAL *restrict m,                \
        REAL *restrict v, int64_t n, REAL alpha, REAL c1, REAL c2, REAL eps)                   \
{                                                                                              \
    for (int64_t i = 0; i < n; i++) {                                                          \
        const REAL new_m = m[i] - m[i] * c1;                                                   \
        const REAL new_v = v[i] - v[i] * c2;                                                   \
        m[i] = new_m;                                                                          \
        v[i] = new_v;                                                                          \
        w[i] -= new_m * alpha / (SQRT(new_v) + eps);                                           \
    }                                                                                          \
}                                                                                              \
/* A (V, D) table whose gradient is zero outside rows (ascending, distinct): one pass. */     \
static void adam_rows_##SUFFIX(REAL *w, REAL *m, REAL *v, const int64_t *rows, int64_t n_rows, \
        const REAL *g, const REAL *s, int64_t num_rows, int64_t dim,                           \
        REAL alpha, REAL c1, REAL c2, REAL eps)                                                \
{                                                                                              \
    int64_t done = 0;                    /* rows before this one are updated */                \
    for (int64_t k = 0; k < n_rows; k++) {                                                     \
        const int64_t r = rows[k];                                                             \
        adam_decay_span_##SUFFIX(w + done * dim, m + done * dim, v + done * dim,               \
                                 (r - done) * dim, alpha, c1, c2, eps);                        \
        adam_span_##SUFFIX(w + r * dim, m + r * dim, v + r * dim, g + k * dim, s + k * dim,    \
                           dim, alpha, c1, c2, eps);                                           \
        done = r + 1;                                                                          \
    }                                                                                          \
    adam_decay_span_##SUFFIX(w + done * dim, m + done * dim, v + done * dim,                   \
                             (num_rows - done) * dim, alpha, c1, c2, eps);                     \
}                                                                                              \
/* Lazy Adam: the same update on rows only. */                                                 \
static void adam_lazy_rows_##SUFFIX(REAL *w, REAL *m, REAL *v, const int64_t *rows,            \
        int64_t n_rows, const REAL *g, const REAL *s, int64_t dim,                             \
        REAL alpha, REAL c1, REAL c2, REAL eps)                                                \
{                                                                                              \
    for (int64_t k = 0; k < n_rows; k++) {                                                     \
        if (k + PREFETCH_AHEAD < n_rows) {                                                     \
            prefetch_adam_row(w, m, v, rows[k + PREFETCH_AHEAD] * dim, dim, sizeof(REAL));    \
        }                                                                                      \
        const int64_t r = rows[k];                                                             \
        adam_span_##SUFFIX(w + r * dim, m + r * dim, v + r * dim, g + k * dim, s + k * dim,    \
                           dim, alpha, c1, c2, eps);                                           \
    }                                                                                          \
}
ADAM(f32, float, sqrtf)
ADAM(f64, double, sqrt)

/* adam(mode, w, m, v, rows or None, grad, squared or None, num_rows, dim, n_rows,
 *      alpha, c1, c2, eps, itemsize); mode 0: dense (S = g * g, w of num_rows * dim entries),
 * 1: rows of a table (Keras-exact), 2: lazy rows. */
static PyObject *py_adam(PyObject *self, PyObject *args)
{
    Py_buffer b[7] = {{0}};
    PyObject *rows_obj, *squared_obj;
    int mode;
    Py_ssize_t num_rows, dim, n_rows, item;
    double alpha, c1, c2, eps;
    if (!PyArg_ParseTuple(args, "iw*w*w*Oy*Onnndddd" "n", &mode, &b[0], &b[1], &b[2], &rows_obj,
                          &b[4], &squared_obj, &num_rows, &dim, &n_rows, &alpha, &c1, &c2, &eps, &item))
        return NULL;
    int ok = (item == 4 || item == 8) && mode >= 0 && mode <= 2 && (mode == 0) == (rows_obj == Py_None)
             && (mode == 0) == (squared_obj == Py_None);
    if (!ok) PyErr_SetString(PyExc_ValueError, "adam: bad mode, item size or arguments");
    if (ok && mode != 0)
        ok = PyObject_GetBuffer(rows_obj, &b[3], PyBUF_SIMPLE) == 0
             && PyObject_GetBuffer(squared_obj, &b[5], PyBUF_SIMPLE) == 0
             && need(&b[3], n_rows * 8, "rows") && need(&b[5], n_rows * dim * item, "squared");
    Py_ssize_t table = num_rows * dim * item;
    ok = ok && need(&b[0], table, "weight") && need(&b[1], table, "m") && need(&b[2], table, "v")
         && need(&b[4], (mode == 0 ? num_rows : n_rows) * dim * item, "grad");
    if (ok && mode != 0) {                      /* rows must be ascending, distinct, in range */
        const int64_t *rows = b[3].buf;
        for (Py_ssize_t k = 0; k < n_rows && ok; k++)
            ok = rows[k] >= (k ? rows[k - 1] + 1 : 0) && rows[k] < num_rows;
        if (!ok) PyErr_SetString(PyExc_ValueError, "adam: rows must be ascending, distinct and in range");
    }
    if (ok) {
        const void *rows = mode ? b[3].buf : NULL, *s = mode ? b[5].buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        if (item == 4) {
            float a = (float)alpha, k1 = (float)c1, k2 = (float)c2, e = (float)eps;
            if (mode == 0) adam_span_f32(b[0].buf, b[1].buf, b[2].buf, b[4].buf, NULL, num_rows * dim, a, k1, k2, e);
            else if (mode == 1) adam_rows_f32(b[0].buf, b[1].buf, b[2].buf, rows, n_rows, b[4].buf, s, num_rows, dim, a, k1, k2, e);
            else adam_lazy_rows_f32(b[0].buf, b[1].buf, b[2].buf, rows, n_rows, b[4].buf, s, dim, a, k1, k2, e);
        } else {
            if (mode == 0) adam_span_f64(b[0].buf, b[1].buf, b[2].buf, b[4].buf, NULL, num_rows * dim, alpha, c1, c2, eps);
            else if (mode == 1) adam_rows_f64(b[0].buf, b[1].buf, b[2].buf, rows, n_rows, b[4].buf, s, num_rows, dim, alpha, c1, c2, eps);
            else adam_lazy_rows_f64(b[0].buf, b[1].buf, b[2].buf, rows, n_rows, b[4].buf, s, dim, alpha, c1, c2, eps);
        }
        Py_END_ALLOW_THREADS
    }
    release(b, 7);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ text: tfds's tokens and ids
 * The twin of subwords_fast.py's Python tokenizer and of SubwordEncoder._token_to_ids, on UTF-8.
 * Texts arrive as one buffer with byte offsets; a code point is a word character (Python's
 * regular-expression \w) where word[code point] is 1, a table the caller fills from Python for
 * the code points the texts hold (so that the Unicode rules are Python's own). */
#define ESCAPE "\\&undsc"                 /* UNDERSCORE_REPLACEMENT, 7 bytes */
#define ESCAPE_LEN 7

/* The code point at s[*i] (advancing *i), or -1 for bytes that are not UTF-8. */
static inline int32_t utf8_next(const uint8_t *s, int64_t end, int64_t *i)
{
    uint32_t c = s[*i];
    int extra = c < 0x80 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 ? 1 : -1;
    if (extra < 0 || c > 0xF4 || *i + extra >= end) return -1;
    if (extra == 0) { *i += 1; return (int32_t)c; }
    c &= 0x3F >> extra;
    for (int k = 1; k <= extra; k++) {
        uint32_t next = s[*i + k];
        if ((next & 0xC0) != 0x80) return -1;
        c = (c << 6) | (next & 0x3F);
    }
    static const uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
    if (c < least[extra] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
    *i += 1 + extra;
    return (int32_t)c;
}

/* code_points_present(text, present): present[c] = 1 for every code point c of the UTF-8 text
 * (present: 0x110000 bytes); False when the text is not UTF-8. */
static PyObject *py_code_points_present(PyObject *self, PyObject *args)
{
    Py_buffer b[2] = {{0}};
    if (!PyArg_ParseTuple(args, "y*w*", &b[0], &b[1])) return NULL;
    int ok = need(&b[1], 0x110000, "present"), valid = 1;
    if (ok) {
        const uint8_t *s = b[0].buf;
        uint8_t *present = b[1].buf;
        Py_BEGIN_ALLOW_THREADS
        for (int64_t i = 0; i < b[0].len && valid;) {
            int32_t c = utf8_next(s, b[0].len, &i);
            if (c < 0) valid = 0;
            else present[c] = 1;
        }
        Py_END_ALLOW_THREADS
    }
    release(b, 2);
    if (!ok) return NULL;
    return PyBool_FromLong(valid);
}

/* A growable array of fixed-size items. */
typedef struct { char *data; int64_t size, capacity, item; } Growing;

static int grow_reserve(Growing *g, int64_t more)
{
    if (g->size + more <= g->capacity) return 1;
    int64_t capacity = g->capacity ? g->capacity : 1024;
    while (capacity < g->size + more) capacity *= 2;
    char *data = realloc(g->data, capacity * g->item);
    if (!data) return 0;
    g->data = data;
    g->capacity = capacity;
    return 1;
}

static int grow_push(Growing *g, const void *value)
{
    if (!grow_reserve(g, 1)) return 0;
    memcpy(g->data + g->size++ * g->item, value, g->item);
    return 1;
}

/* A bytearray holding the array's items (NULL with an exception set when out of memory). */
static PyObject *grow_to_bytearray(const Growing *g)
{
    return PyByteArray_FromStringAndSize(g->size ? g->data : "", g->size * g->item);
}

static inline uint64_t hash_bytes(const uint8_t *s, int64_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;                 /* FNV-1a */
    for (int64_t k = 0; k < n; k++) h = (h ^ s[k]) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

/* Distinct byte strings -> 0, 1, 2, ... in order of first sight: open addressing, each slot
 * holding 32 bits of the string's hash beside its number, and each string copied once into
 * one compact buffer (the texts' occurrences lie far apart: comparing against them would cost
 * a cache miss each). */
typedef struct { uint32_t tag; int32_t number; } Slot;         /* number -1: empty */
typedef struct { int64_t offset, length; } Key;                /* a string in keys */

typedef struct {
    Slot *slots;
    int64_t mask;
    Growing keys;                                     /* bytes */
    Growing entries;                                  /* Key per number */
    Growing hashes;                                   /* uint64 per number, for growing */
} Numbering;

static int numbering_init(Numbering *t, int64_t capacity)
{
    memset(t, 0, sizeof *t);
    int64_t size = 1024;
    while (size < 2 * capacity) size *= 2;
    t->slots = malloc(size * sizeof(Slot));
    if (!t->slots) return 0;
    memset(t->slots, 0xFF, size * sizeof(Slot));
    t->mask = size - 1;
    t->keys.item = 1;
    t->entries.item = sizeof(Key);
    t->hashes.item = 8;
    return 1;
}

static void numbering_free(Numbering *t)
{
    free(t->slots);
    free(t->keys.data);
    free(t->entries.data);
    free(t->hashes.data);
}

static int numbering_grow(Numbering *t)
{
    int64_t size = 2 * (t->mask + 1);
    Slot *slots = malloc(size * sizeof(Slot));
    if (!slots) return 0;
    memset(slots, 0xFF, size * sizeof(Slot));
    const uint64_t *hashes = (const uint64_t *)t->hashes.data;
    for (int64_t n = 0; n < t->hashes.size; n++) {
        int64_t slot = hashes[n] & (size - 1);
        while (slots[slot].number >= 0) slot = (slot + 1) & (size - 1);
        slots[slot] = (Slot){(uint32_t)(hashes[n] >> 32), (int32_t)n};
    }
    free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    return 1;
}

static inline int same_bytes(const uint8_t *a, const uint8_t *b, int64_t n)
{
    for (int64_t k = 0; k < n; k++)
        if (a[k] != b[k]) return 0;
    return 1;
}

/* The number of the string s[0:length], or -1 when it has none. */
static inline int64_t numbering_get(const Numbering *t, const uint8_t *s, int64_t length, uint64_t h,
                                    int64_t *slot_out)
{
    const Key *entries = (const Key *)t->entries.data;
    int64_t slot = h & t->mask;
    for (Slot found; (found = t->slots[slot]).number >= 0; slot = (slot + 1) & t->mask) {
        if (found.tag != (uint32_t)(h >> 32)) continue;
        const Key key = entries[found.number];
        if (key.length == length && same_bytes((const uint8_t *)t->keys.data + key.offset, s, length)) {
            *slot_out = slot;
            return found.number;
        }
    }
    *slot_out = slot;
    return -1;
}

/* The number of s[0:length], numbering it if new (*is_new); -1: no memory. */
static int64_t numbering_find(Numbering *t, const uint8_t *s, int64_t length, int *is_new)
{
    uint64_t h = hash_bytes(s, length);
    int64_t slot, n = numbering_get(t, s, length, h, &slot);
    *is_new = n < 0;
    if (n >= 0) return n;
    n = t->hashes.size;
    Key key = {t->keys.size, length};
    if (n >= INT32_MAX || !grow_reserve(&t->keys, length) || !grow_push(&t->entries, &key)
        || !grow_push(&t->hashes, &h))
        return -1;
    memcpy(t->keys.data + t->keys.size, s, length);
    t->keys.size += length;
    t->slots[slot] = (Slot){(uint32_t)(h >> 32), (int32_t)n};
    if (2 * t->hashes.size > t->mask && !numbering_grow(t)) return -1;
    return n;
}

typedef struct {
    const uint8_t *text;
    const uint8_t *word;                               /* (0x110000,) 1: \w */
    Numbering tokens;
    Growing index;                                     /* int32 per occurrence */
    Growing prepared;                                  /* bytes: the distinct prepared tokens */
    Growing prepared_chars;                            /* int64 per distinct token */
} Tokenizer;

static inline int is_word_at(const Tokenizer *k, int64_t i, int64_t end)
{
    int32_t c = utf8_next(k->text, end, &i);
    return c >= 0 && k->word[c];
}

/* One token text[start : start + length]: its number goes to the index; a new one is written
 * out prepared (a word's "_" escaped, a word's trailing space written "_"). 0: no memory. */
static int emit(Tokenizer *k, int64_t start, int64_t length, int word)
{
    int is_new;
    int64_t n = numbering_find(&k->tokens, k->text + start, length, &is_new);
    if (n < 0) return 0;
    int32_t n32 = (int32_t)n;
    if (!grow_push(&k->index, &n32)) return 0;
    if (!is_new) return 1;
    const uint8_t *s = k->text + start;
    int64_t chars = 0;
    if (!grow_reserve(&k->prepared, ESCAPE_LEN * length)) return 0;
    for (int64_t j = 0; j < length; j++) {
        uint8_t byte = s[j];
        chars += (byte & 0xC0) != 0x80;
        if (word && byte == '_') {
            memcpy(k->prepared.data + k->prepared.size, ESCAPE, ESCAPE_LEN);
            k->prepared.size += ESCAPE_LEN;
            chars += ESCAPE_LEN - 1;
        } else {
            k->prepared.data[k->prepared.size++] = (word && byte == ' ' && j == length - 1) ? '_' : byte;
        }
    }
    return grow_push(&k->prepared_chars, &chars);
}

/* The tokens of text[start:end], a piece between escape sequences: maximal runs of word and of
 * non-word characters, where a word run followed by exactly one space (then a word character or
 * the piece's end) takes the space along.  0: no memory. */
static int tokenize_piece(Tokenizer *k, int64_t start, int64_t end)
{
    int64_t p = start;
    while (p < end) {
        int word = is_word_at(k, p, end);
        int64_t next = p;
        while (next < end) {
            int64_t at = next;
            int32_t c = utf8_next(k->text, end, &next);
            if (c < 0 || k->word[c] != word) { next = at; break; }
        }
        if (next == p) next++;           /* not UTF-8 (the caller checked it is): never stall */
        if (word && next < end && k->text[next] == ' ' && (next + 1 == end || is_word_at(k, next + 1, end)))
            next++;
        if (!emit(k, p, next - p, word)) return 0;
        p = next;
    }
    return 1;
}

/* Where the next escape sequence starts in text[start:end], or end. */
static int64_t find_escape(const uint8_t *text, int64_t start, int64_t end)
{
    for (int64_t i = start; i + ESCAPE_LEN <= end; i++) {
        const uint8_t *hit = memchr(text + i, '\\', end - ESCAPE_LEN + 1 - i);
        if (!hit) break;
        i = hit - text;
        if (memcmp(hit, ESCAPE, ESCAPE_LEN) == 0) return i;
    }
    return end;
}

/* The tokens of one text, as _prepare_tokens_for_encode(_Tokenizer({ESCAPE}).tokenize(text)):
 * an escape sequence written in the text is a token of its own, prepared as "\&" and "undsc"
 * ("undsc_" when the next token is a lone space, which then stays a token too). */
static int tokenize_text(Tokenizer *k, int64_t start, int64_t end)
{
    for (int64_t p = start; p <= end;) {
        int64_t escape = find_escape(k->text, p, end);
        if (!tokenize_piece(k, p, escape)) return 0;
        if (escape == end) break;
        int64_t after = escape + ESCAPE_LEN, piece_end = find_escape(k->text, after, end);
        int lone_space = after < piece_end && k->text[after] == ' '
                         && (after + 1 == piece_end || is_word_at(k, after + 1, piece_end));
        if (!emit(k, escape, 2, 0) || !emit(k, escape + 2, ESCAPE_LEN - 2 + lone_space, 1)) return 0;
        p = after;
    }
    return 1;
}

/* tokenize(text, offsets, word, token_offsets) -> (index, prepared, prepared_chars): text r is
 * text[offsets[r]:offsets[r+1]] (UTF-8); its tokens are index[token_offsets[r]:token_offsets[r+1]]
 * (int32 numbers of distinct tokens, in order of first sight); distinct token n, prepared, is
 * the n-th piece of the UTF-8 bytes ``prepared``, prepared_chars[n] (int64) code points long. */
static PyObject *py_tokenize(PyObject *self, PyObject *args)
{
    Py_buffer b[4] = {{0}};
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &b[0], &b[1], &b[2], &b[3])) return NULL;
    Py_ssize_t texts = b[1].len / 8 - 1;
    int ok = texts >= 0 && need(&b[2], 0x110000, "word") && need(&b[3], (texts + 1) * 8, "token_offsets");
    const int64_t *offsets = b[1].buf;
    for (Py_ssize_t r = 0; ok && r < texts; r++)
        ok = offsets[r] >= 0 && offsets[r] <= offsets[r + 1] && offsets[r + 1] <= b[0].len;
    if (!ok && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "tokenize: bad offsets");
    Tokenizer k = {.text = b[0].buf, .word = b[2].buf};
    k.index.item = 4;
    k.prepared.item = 1;
    k.prepared_chars.item = 8;
    int memory = ok ? numbering_init(&k.tokens, 1 << 16) : 1;
    if (ok && memory) {
        int64_t *token_offsets = b[3].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < texts && memory; r++) {
            token_offsets[r] = k.index.size;
            memory = tokenize_text(&k, offsets[r], offsets[r + 1]);
        }
        token_offsets[texts] = k.index.size;
        Py_END_ALLOW_THREADS
    }
    PyObject *result = NULL;
    if (ok && !memory) PyErr_NoMemory();
    if (ok && memory) {
        PyObject *index = grow_to_bytearray(&k.index), *prepared = grow_to_bytearray(&k.prepared),
                 *chars = grow_to_bytearray(&k.prepared_chars);
        if (index && prepared && chars) result = PyTuple_Pack(3, index, prepared, chars);
        Py_XDECREF(index);
        Py_XDECREF(prepared);
        Py_XDECREF(chars);
    }
    numbering_free(&k.tokens);
    free(k.index.data);
    free(k.prepared.data);
    free(k.prepared_chars.data);
    release(b, 4);
    return result;
}

/* Greedy longest match of one token (UTF-8 bytes s[0:n]) by the subwords: ids as
 * SubwordEncoder._token_to_ids gives them, plus 1 (encode's ids).  0: no memory. */
static int encode_token(const uint8_t *s, int64_t n, Numbering *subwords, const int64_t *subword_id,
                        int64_t num_subwords, int64_t max_chars, Growing *char_start, Growing *ids)
{
    char_start->size = 0;
    for (int64_t j = 0; j <= n; j++)
        if (j == n || (s[j] & 0xC0) != 0x80)
            if (!grow_push(char_start, &j)) return 0;
    const int64_t *at = (const int64_t *)char_start->data;
    int64_t chars = char_start->size - 1;
    for (int64_t i = 0; i < chars;) {
        int64_t id = -1, taken = 1;
        for (int64_t length = chars - i < max_chars ? chars - i : max_chars; length > 0 && id < 0; length--) {
            const uint8_t *candidate = s + at[i];
            int64_t bytes = at[i + length] - at[i];
            if (bytes == ESCAPE_LEN && memcmp(candidate, ESCAPE, ESCAPE_LEN) == 0) {
                id = num_subwords + '_';
            } else {
                int64_t slot, m = numbering_get(subwords, candidate, bytes, hash_bytes(candidate, bytes), &slot);
                if (m >= 0) id = subword_id[m];
            }
            taken = length;
        }
        if (!grow_reserve(ids, 4)) return 0;
        int32_t *out = (int32_t *)ids->data;
        if (id >= 0) {
            out[ids->size++] = (int32_t)(id + 1);
        } else if (at[i + 1] - at[i] == 1 && s[at[i]] == '_') {      /* "_" alone: a space's byte */
            out[ids->size++] = (int32_t)(num_subwords + ' ' + 1);
        } else {                                                      /* the character's bytes */
            for (int64_t j = at[i]; j < at[i + 1]; j++) out[ids->size++] = (int32_t)(num_subwords + s[j] + 1);
        }
        i += taken;
    }
    return 1;
}

/* encode_tokens(tokens, token_ends, subwords, subword_ends, max_chars, id_offsets) -> ids:
 * token t is tokens[token_ends[t-1]:token_ends[t]] (UTF-8), subword s likewise; token t's ids
 * (int32, encode's: 1 + SubwordEncoder._token_to_ids) are ids[id_offsets[t]:id_offsets[t+1]].
 * A subword listed twice has its last id, as in the encoder's dict. */
static PyObject *py_encode_tokens(PyObject *self, PyObject *args)
{
    Py_buffer b[5] = {{0}};
    Py_ssize_t max_chars;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nw*", &b[0], &b[1], &b[2], &b[3], &max_chars, &b[4])) return NULL;
    Py_ssize_t num_tokens = b[1].len / 8, num_subwords = b[3].len / 8;
    const int64_t *token_ends = b[1].buf, *subword_ends = b[3].buf;
    int ok = need(&b[4], (num_tokens + 1) * 8, "id_offsets") && max_chars > 0;
    for (Py_ssize_t t = 0; ok && t < num_tokens; t++)
        ok = (t ? token_ends[t - 1] : 0) <= token_ends[t] && token_ends[t] <= b[0].len;
    for (Py_ssize_t t = 0; ok && t < num_subwords; t++)
        ok = (t ? subword_ends[t - 1] : 0) <= subword_ends[t] && subword_ends[t] <= b[2].len;
    if (!ok && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "encode_tokens: bad arguments");
    Numbering subwords;
    int64_t *subword_id = NULL;
    Growing char_start = {.item = 8}, ids = {.item = 4};
    int memory = ok ? numbering_init(&subwords, num_subwords) : 1;
    if (ok && memory) {
        int64_t *id_offsets = b[4].buf;
        Py_BEGIN_ALLOW_THREADS
        subword_id = malloc((num_subwords + 1) * sizeof(int64_t));
        memory = subword_id != NULL;
        for (Py_ssize_t s = 0; s < num_subwords && memory; s++) {
            int is_new;
            int64_t start = s ? subword_ends[s - 1] : 0;
            int64_t n = numbering_find(&subwords, (const uint8_t *)b[2].buf + start, subword_ends[s] - start, &is_new);
            if (n < 0) memory = 0;
            else subword_id[n] = s;                                   /* a repeat: the last id */
        }
        for (Py_ssize_t t = 0; t < num_tokens && memory; t++) {
            int64_t start = t ? token_ends[t - 1] : 0;
            id_offsets[t] = ids.size;
            memory = encode_token((const uint8_t *)b[0].buf + start, token_ends[t] - start, &subwords, subword_id,
                                  num_subwords, max_chars, &char_start, &ids);
        }
        id_offsets[num_tokens] = ids.size;
        Py_END_ALLOW_THREADS
    }
    PyObject *result = NULL;
    if (ok && !memory) PyErr_NoMemory();
    if (ok && memory) result = grow_to_bytearray(&ids);
    if (ok) numbering_free(&subwords);
    free(subword_id);
    free(char_start.data);
    free(ids.data);
    release(b, 5);
    return result;
}

/* gather_ids(index, id_offsets, token_ids, token_offsets, offsets) -> ids: the ids of every
 * token occurrence in order (int32); text r's are ids[offsets[r]:offsets[r+1]], offsets (R+1,)
 * int64 written here; token_offsets (R+1,) as tokenize gives them. */
static PyObject *py_gather_ids(PyObject *self, PyObject *args)
{
    Py_buffer b[5] = {{0}};
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &b[0], &b[1], &b[2], &b[3], &b[4])) return NULL;
    Py_ssize_t occurrences = b[0].len / 4, num_tokens = b[1].len / 8 - 1, texts = b[3].len / 8 - 1;
    const int32_t *index = b[0].buf;
    const int64_t *id_offsets = b[1].buf, *token_offsets = b[3].buf;
    int ok = num_tokens >= 0 && texts >= 0 && need(&b[4], (texts + 1) * 8, "offsets")
             && token_offsets[texts] == occurrences && id_offsets[num_tokens] * 4 <= b[2].len;
    int64_t total = 0;
    for (Py_ssize_t o = 0; ok && o < occurrences; o++) {
        ok = index[o] >= 0 && index[o] < num_tokens;
        if (ok) total += id_offsets[index[o] + 1] - id_offsets[index[o]];
    }
    if (!ok) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "gather_ids: bad arguments");
        release(b, 5);
        return NULL;
    }
    PyObject *result = PyByteArray_FromStringAndSize(NULL, total * 4);
    if (result) {
        int32_t *ids = (int32_t *)PyByteArray_AS_STRING(result);
        const int32_t *token_ids = b[2].buf;
        int64_t *offsets = b[4].buf, written = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t r = 0; r < texts; r++) {
            offsets[r] = written;
            for (int64_t o = token_offsets[r]; o < token_offsets[r + 1]; o++) {
                int64_t from = id_offsets[index[o]], n = id_offsets[index[o] + 1] - from;
                memcpy(ids + written, token_ids + from, n * 4);
                written += n;
            }
        }
        offsets[texts] = written;
        Py_END_ALLOW_THREADS
    }
    release(b, 5);
    return result;
}

/* ------------------------------------------------------------------ masked pooling, ragged
 * The masked average without per-review distinct rows: out[b] = sum of table[ids[b, t]] over
 * the positions t with mask[b, t], divided by their number n[b] (lengths[b] = n[b]), summed in
 * double in position order and rounded once; and its plain-SGD step, table[ids[b, t]] -=
 * step[b] at each masked-in position (a row held k times moves k times: the scatter-add of the
 * slices, so no distinct rows are needed).  Masked-out positions (the padding) are skipped
 * without touching the table.  Returns the first out-of-range id seen (-1: none); the SGD
 * loop skips such an id, so the caller raises with the table untouched at that position. */
#define MASKED_POOL(SUFFIX, ID_T, REAL)                                                        \
/* total[j] = the sum in double, in position order, of table[row_ids[t]][j] over one review's   \
 * masked-in positions; returns how many there were; an out-of-range id is skipped and put in   \
 * *bad.  for_write: the caller will write the rows it reads (the SGD step).  count: if given, \
 * count[id] += 1 at each such position; per_row: if given, a per-row array (per_row_item bytes \
 * a row) the caller will write next, prefetched with the rows (Adagrad's accumulators). */     \
static inline int64_t masked_row_total_##SUFFIX(const ID_T *row_ids, const uint8_t *row_mask,  \
                                                int64_t length, const REAL *table,             \
                                                int64_t num_rows, int64_t dim, double *total,  \
                                                int for_write, int64_t *bad, int32_t *count,   \
                                                const void *per_row, int64_t per_row_item)     \
{                                                                                              \
    int64_t tokens = 0;                                                                        \
    for (int64_t j = 0; j < dim; j++) total[j] = 0.0;                                          \
    for (int64_t t = 0; t < length; t++) {                                                     \
        if (t + PREFETCH_AHEAD < length && row_mask[t + PREFETCH_AHEAD]) {                     \
            int64_t ahead = (int64_t)row_ids[t + PREFETCH_AHEAD];                              \
            if (ahead >= 0 && ahead < num_rows) {                                              \
                prefetch(table + ahead * dim, dim * sizeof(REAL), for_write);                  \
                if (count) __builtin_prefetch(count + ahead, 1);                               \
                if (per_row) __builtin_prefetch((const char *)per_row + ahead * per_row_item, 1); \
            }                                                                                  \
        }                                                                                      \
        if (!row_mask[t]) continue;                                                            \
        const int64_t id = (int64_t)row_ids[t];                                                \
        if (id < 0 || id >= num_rows) { *bad = id; continue; }                                 \
        const REAL *restrict values = table + id * dim;                                        \
        for (int64_t j = 0; j < dim; j++) total[j] += (double)values[j];                       \
        if (count) count[id]++;              /* how often the review holds each row */         \
        tokens++;                                                                              \
    }                                                                                          \
    return tokens;                                                                             \
}                                                                                              \
static int64_t masked_sum_##SUFFIX(const ID_T *ids, const uint8_t *mask, int64_t batch,        \
                                   int64_t length, const REAL *table, int64_t num_rows,        \
                                   int64_t dim, REAL *out, int64_t *lengths, double *total)    \
{                                                                                              \
    int64_t bad = -1;                                                                          \
    for (int64_t b = 0; b < batch; b++) {                                                      \
        const int64_t tokens = masked_row_total_##SUFFIX(ids + b * length, mask + b * length,  \
                                                         length, table, num_rows, dim, total,  \
                                                         0, &bad, NULL, NULL, 0);              \
        lengths[b] = tokens;                                                                   \
        const double denominator = (double)(tokens > 0 ? tokens : 1);                          \
        for (int64_t j = 0; j < dim; j++) out[b * dim + j] = (REAL)(total[j] / denominator);   \
    }                                                                                          \
    return bad;                                                                                \
}                                                                                              \
static int64_t sgd_scatter_##SUFFIX(const ID_T *ids, const uint8_t *mask, int64_t batch,       \
                                    int64_t length, REAL *table, int64_t num_rows, int64_t dim, \
                                    const REAL *step)                                          \
{                                                                                              \
    int64_t bad = -1;                                                                          \
    for (int64_t b = 0; b < batch; b++) {                                                      \
        const ID_T *row_ids = ids + b * length;                                                \
        const uint8_t *row_mask = mask + b * length;                                           \
        const REAL *restrict s = step + b * dim;                                               \
        for (int64_t t = 0; t < length; t++) {                                                 \
            if (t + PREFETCH_AHEAD < length && row_mask[t + PREFETCH_AHEAD]) {                 \
                int64_t ahead = (int64_t)row_ids[t + PREFETCH_AHEAD];                          \
                if (ahead >= 0 && ahead < num_rows) prefetch(table + ahead * dim, dim * sizeof(REAL), 1); \
            }                                                                                  \
            if (!row_mask[t]) continue;                                                        \
            const int64_t id = (int64_t)row_ids[t];                                            \
            if (id < 0 || id >= num_rows) { bad = id; continue; }                              \
            REAL *restrict w = table + id * dim;                                               \
            for (int64_t j = 0; j < dim; j++) w[j] -= s[j];                                    \
        }                                                                                      \
    }                                                                                          \
    return bad;                                                                                \
}
MASKED_POOL(i32_f32, int32_t, float)
MASKED_POOL(i64_f32, int64_t, float)
MASKED_POOL(i32_f64, int32_t, double)
MASKED_POOL(i64_f64, int64_t, double)

/* masked_pool(mode, ids, mask, table, out_or_step, lengths_or_None, batch, length, num_rows,
 *             dim, id_itemsize, itemsize): mode 0, the masked average into out (B, D) and
 * lengths (B,); mode 1, the SGD scatter of step (B, D) into table.  Returns the first
 * out-of-range id, or -1. */
static PyObject *py_masked_pool(PyObject *self, PyObject *args)
{
    Py_buffer b[5] = {{0}};
    PyObject *lengths_obj;
    int mode;
    Py_ssize_t batch, length, num_rows, dim, id_item, item;
    if (!PyArg_ParseTuple(args, "iy*y*w*y*Onnnnnn", &mode, &b[0], &b[1], &b[2], &b[3], &lengths_obj,
                          &batch, &length, &num_rows, &dim, &id_item, &item))
        return NULL;
    int ok = (item == 4 || item == 8) && (id_item == 4 || id_item == 8) && dim > 0 && batch >= 0
             && length >= 0 && (mode == 0 || mode == 1) && (mode == 0) == (lengths_obj != Py_None);
    if (!ok) PyErr_SetString(PyExc_ValueError, "masked_pool: bad mode, item size or arguments");
    ok = ok && need(&b[0], batch * length * id_item, "ids") && need(&b[1], batch * length, "mask")
         && need(&b[2], num_rows * dim * item, "table") && need(&b[3], batch * dim * item, "out/step");
    if (ok && mode == 0)
        ok = PyObject_GetBuffer(lengths_obj, &b[4], PyBUF_WRITABLE) == 0 && need(&b[4], batch * 8, "lengths");
    double *total = ok ? malloc(dim * sizeof(double)) : NULL;
    if (ok && !total) { PyErr_NoMemory(); ok = 0; }
    int64_t bad = -1;
    if (ok) {
        const uint8_t *mask = b[1].buf;
        void *table = b[2].buf, *vec = b[3].buf;
        Py_BEGIN_ALLOW_THREADS
        if (mode == 0) {
            if (id_item == 4 && item == 4) bad = masked_sum_i32_f32(b[0].buf, mask, batch, length, table, num_rows, dim, vec, b[4].buf, total);
            else if (id_item == 8 && item == 4) bad = masked_sum_i64_f32(b[0].buf, mask, batch, length, table, num_rows, dim, vec, b[4].buf, total);
            else if (id_item == 4) bad = masked_sum_i32_f64(b[0].buf, mask, batch, length, table, num_rows, dim, vec, b[4].buf, total);
            else bad = masked_sum_i64_f64(b[0].buf, mask, batch, length, table, num_rows, dim, vec, b[4].buf, total);
        } else {
            if (id_item == 4 && item == 4) bad = sgd_scatter_i32_f32(b[0].buf, mask, batch, length, table, num_rows, dim, vec);
            else if (id_item == 8 && item == 4) bad = sgd_scatter_i64_f32(b[0].buf, mask, batch, length, table, num_rows, dim, vec);
            else if (id_item == 4) bad = sgd_scatter_i32_f64(b[0].buf, mask, batch, length, table, num_rows, dim, vec);
            else bad = sgd_scatter_i64_f64(b[0].buf, mask, batch, length, table, num_rows, dim, vec);
        }
        Py_END_ALLOW_THREADS
    }
    free(total);
    release(b, 5);
    if (!ok) return NULL;
    return PyLong_FromLongLong(bad);
}

/* ------------------------------------------------------------------ one step per review
 * The model Embedding(mask) -> average -> Dense(1) with sigmoid cross-entropy, trained as
 * fastText trains it: one step per review, in order, at rate lr (docs/gradients.md, sections
 * 9 and 11).  review_forward is the part every such step shares: for review b, its n
 * masked-in positions t and label y,
 *     h = (1/n) sum_t E[ids[b, t]]    (double, rounded once; left in total)     z = h . k + c
 *     loss_b = max(z, 0) - z y + log1p(exp(-|z|))                 e = sigmoid(z) - y
 * and it returns n (0: no masked-in position).  With count, it also adds 1 to count[id] at
 * each masked-in position (how often the review holds each row). */
#define REVIEW_FORWARD(SUFFIX, ID_T, REAL, EXP, LOG1P)                                         \
static inline int64_t review_forward_##SUFFIX(const ID_T *row_ids, const uint8_t *row_mask,    \
        int64_t length, const REAL *table, int64_t num_rows, int64_t dim, const REAL *kernel,  \
        const REAL *bias, REAL y, double *total, int64_t *bad, int32_t *count,                 \
        const REAL *row_acc,                                                                   \
        REAL *logit, REAL *loss, REAL *e)                                                      \
{                                                                                              \
    const int64_t n = masked_row_total_##SUFFIX(row_ids, row_mask, length, table, num_rows,    \
                                                dim, total, 1, bad, count, row_acc,            \
                                                sizeof(REAL));                                 \
    if (n == 0) return 0;                                                                      \
    double z = 0.0;                                                                            \
    for (int64_t j = 0; j < dim; j++) {                                                        \
        const REAL h = (REAL)(total[j] / (double)n);                                           \
        total[j] = (double)h;                                                                  \
        z += (double)h * (double)kernel[j];                                                    \
    }                                                                                          \
    const REAL out = (REAL)(z + (double)bias[0]);                                              \
    *logit = out;                                                                              \
    *loss = (out > 0 ? out : 0) - out * y + LOG1P(EXP(-(out > 0 ? out : -out)));               \
    *e = (REAL)1 / ((REAL)1 + EXP(-out)) - y;                                                  \
    return n;                                                                                  \
}
REVIEW_FORWARD(i32_f32, int32_t, float, expf, log1pf)
REVIEW_FORWARD(i64_f32, int64_t, float, expf, log1pf)
REVIEW_FORWARD(i32_f64, int32_t, double, exp, log1p)
REVIEW_FORWARD(i64_f64, int64_t, double, exp, log1p)

/* The two per-review optimizers, each the update of one review after review_forward; logits[b]
 * and losses[b] are those before review b's step.
 *
 * Plain SGD, fastText's own step:
 *     dh = e k (the old k);  k -= lr e h;  c -= lr e;  E[ids[b, t]] -= lr dh / n at every t
 *
 * Row-wise Adagrad (one accumulator per embedding row; element-wise for the Dense layer).  With
 * u = e k / n (the old k) and c_r the number of positions of review b that hold row r:
 *     g_k = e h:    A_k += g_k * g_k;                 k -= lr g_k / (sqrt(A_k) + eps)
 *     g_c = e:      A_c += g_c * g_c;                 c -= lr g_c / (sqrt(A_c) + eps)
 *     g_r = c_r u:  A_r += c_r^2 q,  q = mean_j u_j^2; E[r] -= lr m_r g_r / (sqrt(A_r) + eps)
 * each distinct row once, at its first position; m_r = row_rate[r] (a fixed per-row rate
 * multiplier), or 1 without row_rate.  q is summed in double and rounded once; everything else
 * is in the table's type.  count (num_rows,) int32 (review_forward's counts) is
 * all 0 on entry and on exit. */
#define REVIEW_UPDATES(SUFFIX, ID_T, REAL, SQRT)                                               \
static inline void sgd_update_##SUFFIX(const ID_T *row_ids, const uint8_t *row_mask,           \
        int64_t end, REAL *table, int64_t num_rows, int64_t dim, REAL *kernel, REAL *bias,     \
        REAL lr, REAL e, int64_t n, const double *h, REAL *step)                               \
{                                                                                              \
    const REAL scale = lr * e, per_row = scale / (REAL)n;                                      \
    for (int64_t j = 0; j < dim; j++) {                                                        \
        step[j] = per_row * kernel[j];                                                         \
        kernel[j] -= scale * (REAL)h[j];                                                       \
    }                                                                                          \
    bias[0] -= scale;                                                                          \
    for (int64_t t = 0; t < end; t++) {                                                        \
        if (!row_mask[t]) continue;                                                            \
        const int64_t id = (int64_t)row_ids[t];                                                \
        if (id < 0 || id >= num_rows) continue;                                                \
        REAL *restrict w = table + id * dim;                                                   \
        for (int64_t j = 0; j < dim; j++) w[j] -= step[j];                                     \
    }                                                                                          \
}                                                                                              \
static inline void adagrad_update_##SUFFIX(const ID_T *row_ids, const uint8_t *row_mask,       \
        int64_t end, REAL *table, int64_t num_rows, int64_t dim, REAL *kernel, REAL *bias,     \
        REAL lr, REAL e, int64_t n, const double *h, REAL *u, REAL *row_acc,                   \
        REAL *kernel_acc, REAL *bias_acc, REAL eps, int32_t *count, const REAL *row_rate)      \
{                                                                                              \
    const REAL per_row = e / (REAL)n;                                                          \
    double squares = 0.0;                                                                      \
    for (int64_t j = 0; j < dim; j++) {                                                        \
        u[j] = per_row * kernel[j];                                                            \
        squares += (double)u[j] * (double)u[j];                                                \
        const REAL g = e * (REAL)h[j];                                                         \
        kernel_acc[j] += g * g;                                                                \
        kernel[j] -= lr * g / (SQRT(kernel_acc[j]) + eps);                                     \
    }                                                                                          \
    bias_acc[0] += e * e;                                                                      \
    bias[0] -= lr * e / (SQRT(bias_acc[0]) + eps);                                             \
    const REAL q = (REAL)(squares / (double)dim);                                              \
    for (int64_t t = 0; t < end; t++) {                                                        \
        if (!row_mask[t]) continue;                                                            \
        const int64_t id = (int64_t)row_ids[t];                                                \
        if (id < 0 || id >= num_rows || count[id] == 0) continue;                              \
        const REAL c = (REAL)count[id];                                                        \
        count[id] = 0;                              /* later positions of this row: done */    \
        row_acc[id] += c * c * q;                                                              \
        const REAL row_lr = row_rate ? lr * row_rate[id] : lr;                                 \
        const REAL rate = row_lr / (SQRT(row_acc[id]) + eps);                                  \
        REAL *restrict w = table + id * dim;                                                   \
        for (int64_t j = 0; j < dim; j++) w[j] -= rate * (c * u[j]);                           \
    }                                                                                          \
}                                                                                              \
/* B reviews in order, each forward then its step: Adagrad when row_acc is given, else SGD.    \
 * Returns the first out-of-range id (-1: none; such a position is skipped), or -2 for a       \
 * review with no masked-in position: ids must be >= 0 (the callers check them first). */      \
static int64_t review_steps_##SUFFIX(const ID_T *ids, const uint8_t *mask, const REAL *labels, \
        int64_t batch, int64_t length, REAL *table, int64_t num_rows, int64_t dim, REAL *kernel, \
        REAL *bias, REAL lr, REAL *logits, REAL *losses, double *total, REAL *u,               \
        REAL *row_acc, REAL *kernel_acc, REAL *bias_acc, REAL eps, int32_t *count,             \
        const REAL *row_rate)                                                                  \
{                                                                                              \
    int64_t bad = -1;                                                                          \
    for (int64_t b = 0; b < batch; b++) {                                                      \
        const ID_T *row_ids = ids + b * length;                                                \
        const uint8_t *row_mask = mask + b * length;                                           \
        const int64_t end = masked_end(row_mask, length);                                      \
        REAL e;                                                                                \
        const int64_t n = review_forward_##SUFFIX(row_ids, row_mask, end, table, num_rows,     \
                                                  dim, kernel, bias, labels[b], total, &bad,   \
                                                  row_acc ? count : NULL, row_acc,             \
                                                  logits + b, losses + b, &e);                 \
        if (n == 0) return -2;                                                                 \
        if (row_acc)                                                                           \
            adagrad_update_##SUFFIX(row_ids, row_mask, end, table, num_rows, dim, kernel, bias, \
                                    lr, e, n, total, u, row_acc, kernel_acc, bias_acc, eps, count, \
                                    row_rate);                                                 \
        else                                                                                   \
            sgd_update_##SUFFIX(row_ids, row_mask, end, table, num_rows, dim, kernel, bias, lr, \
                                e, n, total, u);                                               \
    }                                                                                          \
    return bad;                                                                                \
}
REVIEW_UPDATES(i32_f32, int32_t, float, sqrtf)
REVIEW_UPDATES(i64_f32, int64_t, float, sqrtf)
REVIEW_UPDATES(i32_f64, int32_t, double, sqrt)
REVIEW_UPDATES(i64_f64, int64_t, double, sqrt)

/* review_steps(ids, mask, labels, table, kernel, bias, logits, losses, row_acc, kernel_acc,
 *              bias_acc, count, row_rate, batch, length, num_rows, dim, lr, eps, id_itemsize,
 *              itemsize): row_acc, kernel_acc, bias_acc, count and row_rate all None for SGD;
 * the first four buffers for row-wise Adagrad, row_rate a buffer or None; returns as
 * review_steps_* above. */
static PyObject *py_review_steps(PyObject *self, PyObject *args)
{
    Py_buffer b[13] = {{0}};
    PyObject *state[5];
    Py_ssize_t batch, length, num_rows, dim, id_item, item;
    double lr, eps;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*w*OOOOOnnnnddnn", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                          &b[6], &b[7], &state[0], &state[1], &state[2], &state[3], &state[4], &batch,
                          &length, &num_rows, &dim, &lr, &eps, &id_item, &item))
        return NULL;
    const int adagrad = state[0] != Py_None;
    int ok = (item == 4 || item == 8) && (id_item == 4 || id_item == 8) && dim > 0 && batch >= 0 && length >= 0;
    for (int k = 0; k < 4; k++) ok = ok && ((state[k] != Py_None) == adagrad);
    ok = ok && (adagrad || state[4] == Py_None);
    if (!ok) PyErr_SetString(PyExc_ValueError, "review_steps: bad item size, shape or optimizer state");
    ok = ok && need(&b[0], batch * length * id_item, "ids") && need(&b[1], batch * length, "mask")
         && need(&b[2], batch * item, "labels") && need(&b[3], num_rows * dim * item, "table")
         && need(&b[4], dim * item, "kernel") && need(&b[5], item, "bias")
         && need(&b[6], batch * item, "logits") && need(&b[7], batch * item, "losses");
    const Py_ssize_t state_bytes[4] = {num_rows * item, dim * item, item, num_rows * 4};
    const char *state_names[4] = {"row_acc", "kernel_acc", "bias_acc", "count"};
    for (int k = 0; k < 4 && ok && adagrad; k++)
        ok = PyObject_GetBuffer(state[k], &b[8 + k], PyBUF_WRITABLE) == 0
             && need(&b[8 + k], state_bytes[k], state_names[k]);
    if (ok && adagrad && state[4] != Py_None)         /* optional per-row rate multipliers */
        ok = PyObject_GetBuffer(state[4], &b[12], PyBUF_SIMPLE) == 0 && need(&b[12], num_rows * item, "row_rate");
    double *total = ok ? malloc(dim * sizeof(double)) : NULL;
    void *u = ok ? malloc(dim * item) : NULL;
    if (ok && (!total || !u)) { PyErr_NoMemory(); ok = 0; }
    int64_t bad = -1;
    if (ok) {
        void *p[13];
        for (int k = 0; k < 13; k++) p[k] = b[k].buf;     /* NULL for SGD's absent state */
        Py_BEGIN_ALLOW_THREADS
        if (item == 4) {
            float a = (float)lr, e = (float)eps;
            if (id_item == 4) bad = review_steps_i32_f32(p[0], p[1], p[2], batch, length, p[3], num_rows, dim, p[4], p[5], a, p[6], p[7], total, u, p[8], p[9], p[10], e, p[11], p[12]);
            else bad = review_steps_i64_f32(p[0], p[1], p[2], batch, length, p[3], num_rows, dim, p[4], p[5], a, p[6], p[7], total, u, p[8], p[9], p[10], e, p[11], p[12]);
        } else {
            if (id_item == 4) bad = review_steps_i32_f64(p[0], p[1], p[2], batch, length, p[3], num_rows, dim, p[4], p[5], lr, p[6], p[7], total, u, p[8], p[9], p[10], eps, p[11], p[12]);
            else bad = review_steps_i64_f64(p[0], p[1], p[2], batch, length, p[3], num_rows, dim, p[4], p[5], lr, p[6], p[7], total, u, p[8], p[9], p[10], eps, p[11], p[12]);
        }
        Py_END_ALLOW_THREADS
    }
    free(total);
    free(u);
    release(b, 13);
    if (!ok) return NULL;
    return PyLong_FromLongLong(bad);
}


/* ------------------------------------------------------------------ lazy Adam from the ids
 * Lazy Adam on the pooled embedding's gradient straight from the ids (the n-gram model): no
 * per-review distinct rows, no sort.  Pass 1 walks the masked-in positions once, giving each
 * new row a slot in order of first appearance and adding row_gradient[b] into its float64
 * sum; pass 2 rounds each sum to the table's type (g), takes S = g * g (lazy's keras2 S) and
 * runs Adam's update on that row alone.  For a float32 model every sum is exact in double
 * (at most 2^29 addends of 24-bit numbers), so this is bit for bit the generic path
 * (pooled_row_sums, then adam_lazy_rows); rows are independent, so their order does not
 * matter.  A row seen only at masked-out positions (the padding row) is listed with a zero
 * gradient, as pooled_row_sums (and TensorFlow's IndexedSlices) list it, so it takes lazy
 * Adam's step too.  slot (V,) int32 is all -1 on entry and exit.  Returns the first out-of-range id,
 * after which nothing is updated, or -1. */
#define POOLED_LAZY_ADAM(SUFFIX, ID_T, REAL, AS)                                               \
static int64_t pooled_lazy_adam_##SUFFIX(const ID_T *ids, const uint8_t *mask, int64_t batch,  \
        int64_t length, const REAL *grad, REAL *w, REAL *m, REAL *v, int64_t num_rows,         \
        int64_t dim, int32_t *slot, int64_t *rows, double *acc, REAL *tmp,                     \
        REAL alpha, REAL c1, REAL c2, REAL eps)                                                \
{                                                                                              \
    int64_t used = 0, bad = -1;                                                                \
    for (int64_t b = 0; b < batch; b++) {                                                      \
        const ID_T *row_ids = ids + b * length;                                                \
        const uint8_t *row_mask = mask + b * length;                                           \
        const REAL *restrict g = grad + b * dim;                                               \
        for (int64_t t = 0; t < length; t++) {                                                 \
            if (t + PREFETCH_AHEAD < length) {                                                 \
                int64_t ahead = (int64_t)row_ids[t + PREFETCH_AHEAD];                          \
                if (ahead >= 0 && ahead < num_rows) __builtin_prefetch(slot + ahead, 1);       \
            }                                                                                  \
            const int64_t id = (int64_t)row_ids[t];                                            \
            if (id < 0 || id >= num_rows) { bad = id; continue; }                              \
            int32_t k = slot[id];                                                              \
            if (k < 0) {                                                                       \
                k = (int32_t)used++;                                                           \
                slot[id] = k;                                                                  \
                rows[k] = id;                                                                  \
                for (int64_t j = 0; j < dim; j++) acc[k * dim + j] = 0.0;                      \
            }                                                                                  \
            if (!row_mask[t]) continue;      /* listed with a zero gradient, as TF lists it */ \
            double *restrict sum = acc + (int64_t)k * dim;                                     \
            for (int64_t j = 0; j < dim; j++) sum[j] += (double)g[j];                          \
        }                                                                                      \
    }                                                                                          \
    REAL *gk = tmp, *sk = tmp + dim;                                                           \
    for (int64_t k = 0; k < used; k++) {                                                       \
        if (bad == -1 && k + PREFETCH_AHEAD < used) {                                          \
            prefetch_adam_row(w, m, v, rows[k + PREFETCH_AHEAD] * dim, dim, sizeof(REAL));    \
        }                                                                                      \
        const int64_t r = rows[k];                                                             \
        slot[r] = -1;                                                                          \
        if (bad != -1) continue;                                                               \
        for (int64_t j = 0; j < dim; j++) {                                                    \
            gk[j] = (REAL)acc[k * dim + j];                                                    \
            sk[j] = gk[j] * gk[j];                                                             \
        }                                                                                      \
        adam_span_##AS(w + r * dim, m + r * dim, v + r * dim, gk, sk, dim, alpha, c1, c2, eps); \
    }                                                                                          \
    return bad;                                                                                \
}
POOLED_LAZY_ADAM(i32_f32, int32_t, float, f32)
POOLED_LAZY_ADAM(i64_f32, int64_t, float, f32)
POOLED_LAZY_ADAM(i32_f64, int32_t, double, f64)
POOLED_LAZY_ADAM(i64_f64, int64_t, double, f64)

/* pooled_lazy_adam(ids, mask, grad, w, m, v, slot, rows, acc, batch, length, num_rows, dim,
 *                  alpha, c1, c2, eps, id_itemsize, itemsize): rows holds batch * length
 * int64, acc batch * length * dim doubles (the most rows a batch can touch). */
static PyObject *py_pooled_lazy_adam(PyObject *self, PyObject *args)
{
    Py_buffer b[9] = {{0}};
    Py_ssize_t batch, length, num_rows, dim, id_item, item;
    double alpha, c1, c2, eps;
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*w*w*nnnnddddnn", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                          &b[6], &b[7], &b[8], &batch, &length, &num_rows, &dim, &alpha, &c1, &c2, &eps,
                          &id_item, &item))
        return NULL;
    int ok = (item == 4 || item == 8) && (id_item == 4 || id_item == 8) && dim > 0 && batch >= 0
             && length >= 0 && num_rows < INT32_MAX;
    if (!ok) PyErr_SetString(PyExc_ValueError, "pooled_lazy_adam: bad item size or shape");
    Py_ssize_t table = num_rows * dim * item, positions = batch * length;
    ok = ok && need(&b[0], positions * id_item, "ids") && need(&b[1], positions, "mask")
         && need(&b[2], batch * dim * item, "grad") && need(&b[3], table, "weight") && need(&b[4], table, "m")
         && need(&b[5], table, "v") && need(&b[6], num_rows * 4, "slot") && need(&b[7], positions * 8, "rows")
         && need(&b[8], positions * dim * 8, "acc");
    void *tmp = ok ? malloc(2 * dim * item) : NULL;
    if (ok && !tmp) { PyErr_NoMemory(); ok = 0; }
    int64_t bad = -1;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        if (item == 4) {
            float a = (float)alpha, k1 = (float)c1, k2 = (float)c2, e = (float)eps;
            if (id_item == 4) bad = pooled_lazy_adam_i32_f32(b[0].buf, b[1].buf, batch, length, b[2].buf, b[3].buf, b[4].buf, b[5].buf, num_rows, dim, b[6].buf, b[7].buf, b[8].buf, tmp, a, k1, k2, e);
            else bad = pooled_lazy_adam_i64_f32(b[0].buf, b[1].buf, batch, length, b[2].buf, b[3].buf, b[4].buf, b[5].buf, num_rows, dim, b[6].buf, b[7].buf, b[8].buf, tmp, a, k1, k2, e);
        } else {
            if (id_item == 4) bad = pooled_lazy_adam_i32_f64(b[0].buf, b[1].buf, batch, length, b[2].buf, b[3].buf, b[4].buf, b[5].buf, num_rows, dim, b[6].buf, b[7].buf, b[8].buf, tmp, alpha, c1, c2, eps);
            else bad = pooled_lazy_adam_i64_f64(b[0].buf, b[1].buf, batch, length, b[2].buf, b[3].buf, b[4].buf, b[5].buf, num_rows, dim, b[6].buf, b[7].buf, b[8].buf, tmp, alpha, c1, c2, eps);
        }
        Py_END_ALLOW_THREADS
    }
    free(tmp);
    release(b, 9);
    if (!ok) return NULL;
    return PyLong_FromLongLong(bad);
}

static PyMethodDef methods[] = {
    {"count_review_rows", py_count_review_rows, METH_VARARGS, "Distinct rows per review and their counts."},
    {"pooled_sum", py_pooled_sum, METH_VARARGS, "Embedding + average pooling from the row counts."},
    {"distinct_rows", py_distinct_rows, METH_VARARGS, "The distinct rows of the pairs, ascending."},
    {"row_sums", py_row_sums, METH_VARARGS, "The pooled embedding's gradient summed per row."},
    {"adam", py_adam, METH_VARARGS, "Keras Adam: dense, table rows, or lazy rows."},
    {"code_points_present", py_code_points_present, METH_VARARGS, "Mark the code points of a UTF-8 text."},
    {"tokenize", py_tokenize, METH_VARARGS, "tfds's prepared tokens of many UTF-8 texts."},
    {"encode_tokens", py_encode_tokens, METH_VARARGS, "Subword ids of distinct tokens (greedy longest match)."},
    {"gather_ids", py_gather_ids, METH_VARARGS, "Every token occurrence's ids, text by text."},
    {"masked_pool", py_masked_pool, METH_VARARGS, "Masked average pooling, or its SGD scatter."},
    {"pooled_lazy_adam", py_pooled_lazy_adam, METH_VARARGS, "Lazy Adam from the ids of a masked average."},
    {"review_steps", py_review_steps, METH_VARARGS, "SGD or row-wise Adagrad, one review at a time."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_npembed_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__npembed_native(void) { return PyModule_Create(&module); }
