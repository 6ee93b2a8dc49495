/* The Python module _npembed_native: the only file here that includes Python.h.
 *
 * Each function parses its arguments, takes every array through the buffer protocol and checks
 * it -- C-contiguous, the element type the kernel reads, writable where the kernel writes, and
 * exactly the size its shape gives (scratch buffers: at least) -- checks the token ids against
 * the table, then calls one kernel of kernels.h or tokenizer.h with the GIL released.  A kernel
 * never sees a buffer that was not checked.  native.py passes the shapes (B, L, V, D, ...). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>

#include "kernels.h"
#include "tokenizer.h"

/* ---------------------------------------------------------------- checked buffers */
enum Type { F32, F64, I64, I32, BYTE };
static const char *TYPE_NAME[] = {"float32", "float64", "int64", "int32", "uint8 or bool"};
static const Py_ssize_t TYPE_SIZE[] = {4, 8, 8, 4, 1};
enum { READ = 0, WRITE = 1, AT_LEAST = 2 };

typedef struct { Py_buffer views[16]; int count; } Held;        /* buffers to release */

static void release(Held *held)
{
    for (int i = 0; i < held->count; i++) PyBuffer_Release(&held->views[i]);
    held->count = 0;
}

/* Whether a buffer's struct-module format is the element type (native byte order). */
static int format_is(const Py_buffer *view, enum Type type)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=') f++;
    if (view->itemsize != TYPE_SIZE[type] || f[0] == '\0' || f[1] != '\0') return 0;
    switch (type) {
    case F32: return *f == 'f';
    case F64: return *f == 'd';
    case I64: return *f == 'q' || *f == 'l';
    case I32: return *f == 'i' || *f == 'l';
    default: return *f == 'B' || *f == '?' || *f == 'b' || *f == 'c';
    }
}

/* a * b, or -1 for a negative factor or an overflow (refused by take). */
static Py_ssize_t times(Py_ssize_t a, Py_ssize_t b)
{
    Py_ssize_t product;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &product)) return -1;
    return product;
}

/* obj's data as `count` elements of `type`, checked; NULL with an exception set otherwise, or
 * when an earlier take already failed (so that a function takes its arrays one after another
 * and looks at PyErr_Occurred() once). */
static void *take(Held *held, PyObject *obj, const char *name, enum Type type, Py_ssize_t count, int how)
{
    if (PyErr_Occurred()) return NULL;
    Py_buffer *view = &held->views[held->count];
    const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (how & WRITE ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "npembed native kernel: %s must be a C-contiguous%s %s array",
                     name, how & WRITE ? ", writable" : "", TYPE_NAME[type]);
        return NULL;
    }
    held->count++;
    if (!format_is(view, type)) {
        PyErr_Format(PyExc_TypeError, "npembed native kernel: %s must be %s, got format '%s'", name,
                     TYPE_NAME[type], view->format ? view->format : "B");
        return NULL;
    }
    const Py_ssize_t bytes = times(count, TYPE_SIZE[type]);
    if (bytes < 0 || (how & AT_LEAST ? view->len < bytes : view->len != bytes)) {
        PyErr_Format(PyExc_ValueError, "npembed native kernel: %s holds %zd bytes, needs %s%zd "
                     "(%zd %s): its shape does not match the others'", name, view->len,
                     how & AT_LEAST ? "at least " : "", bytes, count, TYPE_NAME[type]);
        return NULL;
    }
    return view->buf;
}

/* 1 when every id of ids (B, L) lies in [0, V); else IndexError naming the first bad one. */
static int ids_in_range(const int64_t *ids, Py_ssize_t B, Py_ssize_t L, Py_ssize_t V)
{
    int64_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = first_bad_id(ids, (int64_t)B * L, V);
    Py_END_ALLOW_THREADS
    if (bad < 0) return 1;
    PyErr_Format(PyExc_IndexError, "token id %lld at position (%lld, %lld) is outside the table's "
                 "rows [0, %zd)", (long long)ids[bad], (long long)(bad / L), (long long)(bad % L), V);
    return 0;
}

/* 1 when every review of mask (B, L) has a masked-in position; else ValueError. */
static int no_empty_review(const uint8_t *mask, Py_ssize_t B, Py_ssize_t L)
{
    const int64_t empty = first_empty_review(mask, B, L);
    if (empty < 0) return 1;
    PyErr_Format(PyExc_ValueError, "review %lld of the batch has no token (every position is "
                 "padding): its average is undefined", (long long)empty);
    return 0;
}

/* 1 when offsets (B+1,) run from 0, never decrease and end at most at capacity. */
static int offsets_ok(const int64_t *offsets, Py_ssize_t B, Py_ssize_t capacity, const char *name)
{
    int ok = offsets[0] == 0 && offsets[B] <= capacity;
    for (Py_ssize_t b = 0; ok && b < B; b++) ok = offsets[b] <= offsets[b + 1];
    if (!ok) PyErr_Format(PyExc_ValueError, "npembed native kernel: %s are not ascending offsets "
                          "within %zd entries", name, capacity);
    return ok;
}

/* 1 when every dimension is positive (0 allowed where zero_ok) and below 2^31. */
static int dims_ok(const char *function, int zero_ok, int n, const Py_ssize_t *dims)
{
    for (int i = 0; i < n; i++) {
        if (dims[i] < (zero_ok ? 0 : 1) || dims[i] >= ((Py_ssize_t)1 << 31)) {
            PyErr_Format(PyExc_ValueError, "npembed native kernel %s: bad shape (dimension %zd)",
                         function, dims[i]);
            return 0;
        }
    }
    return 1;
}

static AdamConstants adam_constants(double alpha, double c1, double c2, double eps)
{
    return (AdamConstants){(float)alpha, (float)c1, (float)c2, (float)eps};
}

/* ---------------------------------------------------------------- pooled embedding (embedding.c) */

/* review_row_counts(ids (B, L) int64, mask (B, L) or None, counter (V,) int32, pair_rows,
 *                   pair_counts (>= B*L,) int64, offsets (B+1,) int64, B, L, V) */
static PyObject *py_review_row_counts(PyObject *self, PyObject *args)
{
    PyObject *o[6];
    Py_ssize_t B, L, V;
    if (!PyArg_ParseTuple(args, "OOOOOOnnn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &B, &L, &V)) return NULL;
    if (!dims_ok("review_row_counts", 0, 3, (Py_ssize_t[]){B, L, V})) return NULL;
    Held held = {.count = 0};
    const int64_t *ids = take(&held, o[0], "ids", I64, B * L, READ);
    const uint8_t *mask = o[1] == Py_None ? NULL : take(&held, o[1], "mask", BYTE, B * L, READ);
    int32_t *counter = take(&held, o[2], "counter", I32, V, WRITE);
    int64_t *pair_rows = take(&held, o[3], "pair_rows", I64, B * L, WRITE | AT_LEAST);
    int64_t *pair_counts = take(&held, o[4], "pair_counts", I64, B * L, WRITE | AT_LEAST);
    int64_t *offsets = take(&held, o[5], "offsets", I64, B + 1, WRITE);
    const int ok = !PyErr_Occurred() && ids_in_range(ids, B, L, V);
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        review_row_counts(ids, mask, B, L, counter, pair_rows, pair_counts, offsets);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}


/* The pairs of review_row_counts, P entries each: offsets (B+1,) within P and pair_rows
 * [:pairs] in [0, V).  Returns the number of pairs, or -1 with an exception set. */
static int64_t checked_pairs(const int64_t *pair_rows, Py_ssize_t P, const int64_t *offsets, Py_ssize_t B,
                             Py_ssize_t V)
{
    if (PyErr_Occurred() || !offsets_ok(offsets, B, P, "offsets")) return -1;
    if (first_bad_id(pair_rows, offsets[B], V) >= 0) {
        PyErr_SetString(PyExc_ValueError, "npembed native kernel: pair_rows name a row outside the table");
        return -1;
    }
    return offsets[B];
}

/* pooled_embedding_forward(table (V, D) f32, pair_rows (P,), pair_counts (P,), offsets (B+1,)
 *                          int64, out (B, D) f32, lengths (B,) int64, V, B, D, P, length) */
static PyObject *py_pooled_embedding_forward(PyObject *self, PyObject *args)
{
    PyObject *o[6];
    Py_ssize_t V, B, D, P, length;
    if (!PyArg_ParseTuple(args, "OOOOOOnnnnn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &V, &B, &D, &P, &length))
        return NULL;
    if (!dims_ok("pooled_embedding_forward", 0, 4, (Py_ssize_t[]){V, B, D, P})) return NULL;
    Held held = {.count = 0};
    const float *table = take(&held, o[0], "table", F32, V * D, READ);
    const int64_t *pair_rows = take(&held, o[1], "pair_rows", I64, P, READ);
    const int64_t *pair_counts = take(&held, o[2], "pair_counts", I64, P, READ);
    const int64_t *offsets = take(&held, o[3], "offsets", I64, B + 1, READ);
    float *out = take(&held, o[4], "out", F32, B * D, WRITE);
    int64_t *lengths = take(&held, o[5], "lengths", I64, B, WRITE);
    int ok = checked_pairs(pair_rows, P, offsets, B, V) >= 0;
    double *total = ok ? malloc(D * sizeof(double)) : NULL;
    if (ok && !total) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        pooled_embedding_forward(table, pair_rows, pair_counts, offsets, B, D, length, out, lengths, total);
        Py_END_ALLOW_THREADS
    }
    free(total);
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* distinct_rows(pair_rows (P,), offsets (B+1,) int64, slot (V,) int32, rows (2P,) int64,
 *               single (P,) uint8, B, V, P, scan_table) -> U */
static PyObject *py_distinct_rows(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    Py_ssize_t B, V, P;
    int scan_table;
    if (!PyArg_ParseTuple(args, "OOOOOnnnp", &o[0], &o[1], &o[2], &o[3], &o[4], &B, &V, &P, &scan_table))
        return NULL;
    if (!dims_ok("distinct_rows", 0, 3, (Py_ssize_t[]){B, V, P})) return NULL;
    Held held = {.count = 0};
    const int64_t *pair_rows = take(&held, o[0], "pair_rows", I64, P, READ);
    const int64_t *offsets = take(&held, o[1], "offsets", I64, B + 1, READ);
    int32_t *slot = take(&held, o[2], "slot", I32, V, WRITE);
    int64_t *rows = take(&held, o[3], "rows", I64, 2 * P, WRITE);
    uint8_t *single = take(&held, o[4], "single", BYTE, P, WRITE);
    const int64_t pairs = checked_pairs(pair_rows, P, offsets, B, V);
    int64_t distinct = 0;
    if (pairs >= 0) {
        Py_BEGIN_ALLOW_THREADS
        distinct = distinct_rows(pair_rows, pairs, slot, V, scan_table, rows, single);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (pairs < 0) return NULL;
    return PyLong_FromLongLong(distinct);
}

/* pooled_embedding_backward(pair_rows (P,), pair_counts (P,), offsets (B+1,) int64,
 *     row_gradient (B, D) f32, slot (V,) int32, rows (>= U,) int64, single (>= U,) uint8,
 *     acc (>= 2UD,) f64, sums (U, D) f32, squares (U, D) f32, B, D, V, P, U): after distinct_rows,
 * which left slot mapping each of rows[:U] to its index. */
static PyObject *py_pooled_embedding_backward(PyObject *self, PyObject *args)
{
    PyObject *o[10];
    Py_ssize_t B, D, V, P, U;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOnnnnn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7],
                          &o[8], &o[9], &B, &D, &V, &P, &U))
        return NULL;
    if (!dims_ok("pooled_embedding_backward", 0, 5, (Py_ssize_t[]){B, D, V, P, U})) return NULL;
    Held held = {.count = 0};
    const int64_t *pair_rows = take(&held, o[0], "pair_rows", I64, P, READ);
    const int64_t *pair_counts = take(&held, o[1], "pair_counts", I64, P, READ);
    const int64_t *offsets = take(&held, o[2], "offsets", I64, B + 1, READ);
    const float *row_gradient = take(&held, o[3], "row_gradient", F32, B * D, READ);
    int32_t *slot = take(&held, o[4], "slot", I32, V, WRITE);
    const int64_t *rows = take(&held, o[5], "rows", I64, U, READ | AT_LEAST);
    const uint8_t *single = take(&held, o[6], "single", BYTE, U, READ | AT_LEAST);
    double *acc = take(&held, o[7], "acc", F64, times(2 * U, D), WRITE | AT_LEAST);
    float *sums = take(&held, o[8], "sums", F32, U * D, WRITE);
    float *squares = take(&held, o[9], "squares", F32, U * D, WRITE);
    int ok = checked_pairs(pair_rows, P, offsets, B, V) >= 0;
    uint8_t *started = ok ? malloc(U + 1) : NULL;
    if (ok && !started) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        pooled_embedding_backward(pair_rows, pair_counts, offsets, row_gradient, B, D, slot, rows, U, single,
                                  acc, started, sums, squares);
        Py_END_ALLOW_THREADS
    }
    free(started);
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- masked pooling (masked_pool.c) */

/* masked_pool_forward(ids (B, L) int64, mask (B, L) uint8, table (V, D) f32, out (B, D) f32,
 *                     lengths (B,) int64, B, L, V, D) */
static PyObject *py_masked_pool_forward(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    Py_ssize_t B, L, V, D;
    if (!PyArg_ParseTuple(args, "OOOOOnnnn", &o[0], &o[1], &o[2], &o[3], &o[4], &B, &L, &V, &D)) return NULL;
    if (!dims_ok("masked_pool_forward", 0, 4, (Py_ssize_t[]){B, L, V, D})) return NULL;
    Held held = {.count = 0};
    const int64_t *ids = take(&held, o[0], "ids", I64, B * L, READ);
    const uint8_t *mask = take(&held, o[1], "mask", BYTE, B * L, READ);
    const float *table = take(&held, o[2], "table", F32, V * D, READ);
    float *out = take(&held, o[3], "out", F32, B * D, WRITE);
    int64_t *lengths = take(&held, o[4], "lengths", I64, B, WRITE);
    int ok = !PyErr_Occurred() && ids_in_range(ids, B, L, V);
    double *total = ok ? malloc(D * sizeof(double)) : NULL;
    if (ok && !total) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        masked_pool_forward(ids, mask, B, L, table, V, D, out, lengths, total);
        Py_END_ALLOW_THREADS
    }
    free(total);
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* sgd_scatter(ids (B, L) int64, mask (B, L) uint8, table (V, D) f32, step (B, D) f32, B, L, V, D) */
static PyObject *py_sgd_scatter(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    Py_ssize_t B, L, V, D;
    if (!PyArg_ParseTuple(args, "OOOOnnnn", &o[0], &o[1], &o[2], &o[3], &B, &L, &V, &D)) return NULL;
    if (!dims_ok("sgd_scatter", 0, 4, (Py_ssize_t[]){B, L, V, D})) return NULL;
    Held held = {.count = 0};
    const int64_t *ids = take(&held, o[0], "ids", I64, B * L, READ);
    const uint8_t *mask = take(&held, o[1], "mask", BYTE, B * L, READ);
    float *table = take(&held, o[2], "table", F32, V * D, WRITE);
    const float *step = take(&held, o[3], "step", F32, B * D, READ);
    const int ok = !PyErr_Occurred() && ids_in_range(ids, B, L, V);
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        sgd_scatter(ids, mask, B, L, table, V, D, step);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- Adam (adam.c) */

/* adam_dense(w, m, v, g (n,) f32, n, alpha, c1, c2, eps) */
static PyObject *py_adam_dense(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    Py_ssize_t n;
    double alpha, c1, c2, eps;
    if (!PyArg_ParseTuple(args, "OOOOndddd", &o[0], &o[1], &o[2], &o[3], &n, &alpha, &c1, &c2, &eps)) return NULL;
    if (!dims_ok("adam_dense", 1, 1, (Py_ssize_t[]){n})) return NULL;
    Held held = {.count = 0};
    float *w = take(&held, o[0], "weight", F32, n, WRITE);
    float *m = take(&held, o[1], "m", F32, n, WRITE);
    float *v = take(&held, o[2], "v", F32, n, WRITE);
    const float *g = take(&held, o[3], "grad", F32, n, READ);
    const int ok = !PyErr_Occurred();
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        adam_dense(w, m, v, g, n, adam_constants(alpha, c1, c2, eps));
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* 1 when rows (U,) are ascending, distinct and in [0, V); else ValueError. */
static int rows_ascending(const int64_t *rows, Py_ssize_t U, Py_ssize_t V)
{
    int ok = 1;
    for (Py_ssize_t k = 0; k < U && ok; k++) ok = rows[k] >= (k ? rows[k - 1] + 1 : 0) && rows[k] < V;
    if (!ok) PyErr_SetString(PyExc_ValueError, "adam: rows must be ascending, distinct and in range");
    return ok;
}

/* adam_rows / lazy_adam_rows(w, m, v (V, D) f32, rows (U,) int64, g (U, D) f32, s (U, D) f32,
 *                            V, D, U, alpha, c1, c2, eps) */
static PyObject *adam_on_rows(PyObject *args, int lazy)
{
    PyObject *o[6];
    Py_ssize_t V, D, U;
    double alpha, c1, c2, eps;
    if (!PyArg_ParseTuple(args, "OOOOOOnnndddd", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &V, &D, &U, &alpha,
                          &c1, &c2, &eps))
        return NULL;
    if (!dims_ok(lazy ? "lazy_adam_rows" : "adam_rows", 1, 3, (Py_ssize_t[]){V, D, U})) return NULL;
    Held held = {.count = 0};
    float *w = take(&held, o[0], "weight", F32, V * D, WRITE);
    float *m = take(&held, o[1], "m", F32, V * D, WRITE);
    float *v = take(&held, o[2], "v", F32, V * D, WRITE);
    const int64_t *rows = take(&held, o[3], "rows", I64, U, READ);
    const float *g = take(&held, o[4], "grad", F32, U * D, READ);
    const float *s = take(&held, o[5], "squared", F32, U * D, READ);
    const int ok = !PyErr_Occurred() && rows_ascending(rows, U, V);
    if (ok) {
        const AdamConstants k = adam_constants(alpha, c1, c2, eps);
        Py_BEGIN_ALLOW_THREADS
        if (lazy) lazy_adam_rows(w, m, v, rows, U, g, s, D, k);
        else adam_rows(w, m, v, rows, U, g, s, V, D, k);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_adam_rows(PyObject *self, PyObject *args) { return adam_on_rows(args, 0); }
static PyObject *py_lazy_adam_rows(PyObject *self, PyObject *args) { return adam_on_rows(args, 1); }

/* pooled_lazy_adam(ids (B, L) int64, mask (B, L) uint8, grad (B, D) f32, w, m, v (V, D) f32,
 *                  slot (V,) int32, rows (>= BL,) int64, acc (>= BLD,) f64, B, L, V, D,
 *                  alpha, c1, c2, eps) */
static PyObject *py_pooled_lazy_adam(PyObject *self, PyObject *args)
{
    PyObject *o[9];
    Py_ssize_t B, L, V, D;
    double alpha, c1, c2, eps;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOnnnndddd", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7],
                          &o[8], &B, &L, &V, &D, &alpha, &c1, &c2, &eps))
        return NULL;
    if (!dims_ok("pooled_lazy_adam", 0, 4, (Py_ssize_t[]){B, L, V, D})) return NULL;
    Held held = {.count = 0};
    const int64_t *ids = take(&held, o[0], "ids", I64, B * L, READ);
    const uint8_t *mask = take(&held, o[1], "mask", BYTE, B * L, READ);
    const float *grad = take(&held, o[2], "grad", F32, B * D, READ);
    float *w = take(&held, o[3], "weight", F32, V * D, WRITE);
    float *m = take(&held, o[4], "m", F32, V * D, WRITE);
    float *v = take(&held, o[5], "v", F32, V * D, WRITE);
    int32_t *slot = take(&held, o[6], "slot", I32, V, WRITE);
    int64_t *rows = take(&held, o[7], "rows", I64, B * L, WRITE | AT_LEAST);
    double *acc = take(&held, o[8], "acc", F64, times(B * L, D), WRITE | AT_LEAST);
    int ok = !PyErr_Occurred() && ids_in_range(ids, B, L, V);
    float *scratch = ok ? malloc(2 * D * sizeof(float)) : NULL;
    if (ok && !scratch) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        const AdamConstants k = adam_constants(alpha, c1, c2, eps);
        Py_BEGIN_ALLOW_THREADS
        pooled_lazy_adam(ids, mask, B, L, grad, w, m, v, V, D, slot, rows, acc, scratch, k);
        Py_END_ALLOW_THREADS
    }
    free(scratch);
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- one step per review (review_steps.c) */

/* The arrays both per-review optimizers share; 0 with an exception set when one is wrong. */
typedef struct {
    const int64_t *ids;
    const uint8_t *mask;
    const float *labels;
    ReviewModel model;
    float *logits, *losses;
} ReviewBatch;

static int take_review_batch(Held *held, PyObject **o, Py_ssize_t B, Py_ssize_t L, Py_ssize_t V,
                             Py_ssize_t D, ReviewBatch *batch)
{
    batch->ids = take(held, o[0], "ids", I64, B * L, READ);
    batch->mask = take(held, o[1], "mask", BYTE, B * L, READ);
    batch->labels = take(held, o[2], "labels", F32, B, READ);
    batch->model.table = take(held, o[3], "table", F32, V * D, WRITE);
    batch->model.kernel = take(held, o[4], "kernel", F32, D, WRITE);
    batch->model.bias = take(held, o[5], "bias", F32, 1, WRITE);
    batch->logits = take(held, o[6], "logits", F32, B, WRITE);
    batch->losses = take(held, o[7], "losses", F32, B, WRITE);
    return !PyErr_Occurred() && ids_in_range(batch->ids, B, L, V) && no_empty_review(batch->mask, B, L);
}

/* review_steps_sgd(ids (B, L) int64, mask (B, L) uint8, labels (B,), table (V, D), kernel (D,),
 *                  bias (1,), logits (B,), losses (B,) f32, B, L, V, D, rate) */
static PyObject *py_review_steps_sgd(PyObject *self, PyObject *args)
{
    PyObject *o[8];
    Py_ssize_t B, L, V, D;
    double rate;
    if (!PyArg_ParseTuple(args, "OOOOOOOOnnnnd", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &B, &L,
                          &V, &D, &rate))
        return NULL;
    if (!dims_ok("review_steps_sgd", 0, 4, (Py_ssize_t[]){B, L, V, D})) return NULL;
    Held held = {.count = 0};
    ReviewBatch r;
    int ok = take_review_batch(&held, o, B, L, V, D, &r);
    double *h = ok ? malloc(D * sizeof(double)) : NULL;
    float *scratch = ok ? malloc(D * sizeof(float)) : NULL;
    if (ok && (!h || !scratch)) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        review_steps_sgd(r.ids, r.mask, r.labels, B, L, r.model, V, D, (float)rate, r.logits, r.losses, h, scratch);
        Py_END_ALLOW_THREADS
    }
    free(h);
    free(scratch);
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* review_steps_adagrad(ids, mask, labels, table, kernel, bias, logits, losses as above,
 *     table_acc (V,), kernel_acc (D,), bias_acc (1,) f32, count (V,) int32 all 0, B, L, V, D,
 *     rate, eps) */
static PyObject *py_review_steps_adagrad(PyObject *self, PyObject *args)
{
    PyObject *o[12];
    Py_ssize_t B, L, V, D;
    double rate, eps;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOnnnndd", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7],
                          &o[8], &o[9], &o[10], &o[11], &B, &L, &V, &D, &rate, &eps))
        return NULL;
    if (!dims_ok("review_steps_adagrad", 0, 4, (Py_ssize_t[]){B, L, V, D})) return NULL;
    Held held = {.count = 0};
    ReviewBatch r;
    AdagradState acc;
    acc.table = take(&held, o[8], "table_acc", F32, V, WRITE);
    acc.kernel = take(&held, o[9], "kernel_acc", F32, D, WRITE);
    acc.bias = take(&held, o[10], "bias_acc", F32, 1, WRITE);
    int32_t *count = take(&held, o[11], "count", I32, V, WRITE);
    int ok = take_review_batch(&held, o, B, L, V, D, &r);
    double *h = ok ? malloc(D * sizeof(double)) : NULL;
    float *scratch = ok ? malloc(D * sizeof(float)) : NULL;
    if (ok && (!h || !scratch)) { PyErr_NoMemory(); ok = 0; }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        review_steps_adagrad(r.ids, r.mask, r.labels, B, L, r.model, acc, count, V, D, (float)rate, (float)eps,
                             r.logits, r.losses, h, scratch);
        Py_END_ALLOW_THREADS
    }
    free(h);
    free(scratch);
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- text (tokenizer.c) */

/* code_points_present(text bytes, present (0x110000,) uint8) -> False when text is not UTF-8 */
static PyObject *py_code_points_present(PyObject *self, PyObject *args)
{
    PyObject *o[2];
    if (!PyArg_ParseTuple(args, "OO", &o[0], &o[1])) return NULL;
    Held held = {.count = 0};
    const uint8_t *text = take(&held, o[0], "text", BYTE, 0, READ | AT_LEAST);
    uint8_t *present = take(&held, o[1], "present", BYTE, 0x110000, WRITE);
    const int ok = !PyErr_Occurred();
    int valid = 0;
    if (ok) {
        const Py_ssize_t n = held.views[0].len;
        Py_BEGIN_ALLOW_THREADS
        valid = code_points_present(text, n, present);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (!ok) return NULL;
    return PyBool_FromLong(valid);
}

/* A bytearray holding the array's items (NULL with an exception set when out of memory). */
static PyObject *to_bytearray(const Growing *g)
{
    return PyByteArray_FromStringAndSize(g->size ? g->data : "", g->size * g->item);
}

/* 1 when ends (n,) never decrease and end within `bytes`; else ValueError. */
static int ends_ok(const int64_t *ends, Py_ssize_t n, Py_ssize_t bytes, const char *name)
{
    int ok = 1;
    for (Py_ssize_t t = 0; t < n && ok; t++) ok = (t ? ends[t - 1] : 0) <= ends[t] && ends[t] <= bytes;
    if (!ok) PyErr_Format(PyExc_ValueError, "npembed native kernel: %s are not ascending offsets "
                          "within %zd bytes", name, bytes);
    return ok;
}

/* tokenize(text bytes, offsets (R+1,) int64, word (0x110000,) uint8, token_offsets (R+1,) int64)
 * -> (index int32, prepared bytes, prepared_chars int64) as bytearrays; see tokenize_texts. */
static PyObject *py_tokenize(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3])) return NULL;
    Held held = {.count = 0};
    const uint8_t *text = take(&held, o[0], "text", BYTE, 0, READ | AT_LEAST);
    const int64_t *offsets = take(&held, o[1], "offsets", I64, 1, READ | AT_LEAST);
    const Py_ssize_t R = held.count == 2 ? held.views[1].len / 8 - 1 : 0;
    const uint8_t *word = take(&held, o[2], "word", BYTE, 0x110000, READ);
    int64_t *token_offsets = take(&held, o[3], "token_offsets", I64, R + 1, WRITE);
    const int ok = !PyErr_Occurred() && offsets_ok(offsets, R, held.views[0].len, "text offsets");
    Growing index = {0}, prepared = {0}, chars = {0};
    int memory = 1;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        memory = tokenize_texts(text, offsets, R, word, token_offsets, &index, &prepared, &chars);
        Py_END_ALLOW_THREADS
    }
    PyObject *result = NULL;
    if (ok && !memory) PyErr_NoMemory();
    if (ok && memory) {
        PyObject *a = to_bytearray(&index), *b = to_bytearray(&prepared), *c = to_bytearray(&chars);
        if (a && b && c) result = PyTuple_Pack(3, a, b, c);
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_XDECREF(c);
    }
    growing_free(&index);
    growing_free(&prepared);
    growing_free(&chars);
    release(&held);
    return result;
}

/* encode_tokens(tokens bytes, token_ends (T,) int64, subwords bytes, subword_ends (S,) int64,
 *               max_chars, id_offsets (T+1,) int64) -> ids (int32) as a bytearray */
static PyObject *py_encode_tokens(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    Py_ssize_t max_chars;
    if (!PyArg_ParseTuple(args, "OOOOnO", &o[0], &o[1], &o[2], &o[3], &max_chars, &o[4])) return NULL;
    Held held = {.count = 0};
    const uint8_t *tokens = take(&held, o[0], "tokens", BYTE, 0, READ | AT_LEAST);
    const int64_t *token_ends = take(&held, o[1], "token_ends", I64, 0, READ | AT_LEAST);
    const uint8_t *subwords = take(&held, o[2], "subwords", BYTE, 0, READ | AT_LEAST);
    const int64_t *subword_ends = take(&held, o[3], "subword_ends", I64, 0, READ | AT_LEAST);
    const Py_ssize_t T = held.count == 4 ? held.views[1].len / 8 : 0, S = held.count == 4 ? held.views[3].len / 8 : 0;
    int64_t *id_offsets = take(&held, o[4], "id_offsets", I64, T + 1, WRITE);
    const int ok = !PyErr_Occurred() && max_chars > 0 && ends_ok(token_ends, T, held.views[0].len, "token_ends")
                   && ends_ok(subword_ends, S, held.views[2].len, "subword_ends");
    if (!ok && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "encode_tokens: max_chars must be positive");
    Growing ids = {0};
    int memory = 1;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        memory = encode_tokens(tokens, token_ends, T, subwords, subword_ends, S, max_chars, id_offsets, &ids);
        Py_END_ALLOW_THREADS
    }
    PyObject *result = NULL;
    if (ok && !memory) PyErr_NoMemory();
    if (ok && memory) result = to_bytearray(&ids);
    growing_free(&ids);
    release(&held);
    return result;
}

/* gather_ids(index (M,) int32, id_offsets (T+1,) int64, token_ids int32, token_offsets (R+1,)
 *            int64, offsets (R+1,) int64) -> ids (int32) as a bytearray; see gather_ids. */
static PyObject *py_gather_ids(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    if (!PyArg_ParseTuple(args, "OOOOO", &o[0], &o[1], &o[2], &o[3], &o[4])) return NULL;
    Held held = {.count = 0};
    const int32_t *index = take(&held, o[0], "index", I32, 0, READ | AT_LEAST);
    const int64_t *id_offsets = take(&held, o[1], "id_offsets", I64, 1, READ | AT_LEAST);
    const int32_t *token_ids = take(&held, o[2], "token_ids", I32, 0, READ | AT_LEAST);
    const int64_t *token_offsets = take(&held, o[3], "token_offsets", I64, 1, READ | AT_LEAST);
    const int taken = held.count == 4;
    const Py_ssize_t M = taken ? held.views[0].len / 4 : 0, T = taken ? held.views[1].len / 8 - 1 : 0,
                     R = taken ? held.views[3].len / 8 - 1 : 0;
    int64_t *offsets = take(&held, o[4], "offsets", I64, R + 1, WRITE);
    int ok = !PyErr_Occurred() && offsets_ok(id_offsets, T, held.views[2].len / 4, "id_offsets")
             && offsets_ok(token_offsets, R, M, "token_offsets");
    const int64_t total = ok ? gathered_length(index, M, id_offsets, T) : -1;
    if (ok && (total < 0 || token_offsets[R] != M)) {
        PyErr_SetString(PyExc_ValueError, "gather_ids: an occurrence names no token, or the texts' "
                        "offsets do not cover every occurrence");
        ok = 0;
    }
    PyObject *result = ok ? PyByteArray_FromStringAndSize(NULL, total * 4) : NULL;
    if (result) {
        int32_t *ids = (int32_t *)PyByteArray_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        gather_ids(index, id_offsets, token_ids, token_offsets, R, ids, offsets);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    return result;
}

/* ---------------------------------------------------------------- LSTM recurrence (lstm.c) */

/* 1 when offsets (J+1,) run from 0 to N and each step's count is at most the one before it
 * (at most max_first at step 0): the packed layout lstm.c reads. */
static int packed_steps_ok(const int64_t *offsets, Py_ssize_t J, Py_ssize_t N, Py_ssize_t max_first)
{
    int ok = offsets[0] == 0 && offsets[J] == N && (J == 0 || offsets[1] <= max_first);
    for (Py_ssize_t j = 0; ok && j < J; j++)
        ok = offsets[j] <= offsets[j + 1] && (j == 0 || offsets[j + 1] - offsets[j] <= offsets[j] - offsets[j - 1]);
    if (!ok) PyErr_Format(PyExc_ValueError, "npembed native kernel lstm: offsets are not packed steps "
                          "(from 0 to %zd, counts never growing, at most %zd at step 0)", N, max_first);
    return ok;
}

/* lstm_forward(gates (N, 4U) f32, recurrent (U, 4U) f32, offsets (J+1,) int64, states (N+1, U),
 *              cells (N+1, U), tanh_cells (N, U) f32, J, N, U) */
static PyObject *py_lstm_forward(PyObject *self, PyObject *args)
{
    PyObject *o[6];
    Py_ssize_t J, N, U;
    if (!PyArg_ParseTuple(args, "OOOOOOnnn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &J, &N, &U)) return NULL;
    if (!dims_ok("lstm_forward", 1, 3, (Py_ssize_t[]){J, N, U}) || !dims_ok("lstm_forward", 0, 1, (Py_ssize_t[]){4 * U}))
        return NULL;
    Held held = {.count = 0};
    float *gates = take(&held, o[0], "gates", F32, N * 4 * U, WRITE);
    const float *recurrent = take(&held, o[1], "recurrent", F32, U * 4 * U, READ);
    const int64_t *offsets = take(&held, o[2], "offsets", I64, J + 1, READ);
    float *states = take(&held, o[3], "states", F32, (N + 1) * U, WRITE);
    float *cells = take(&held, o[4], "cells", F32, (N + 1) * U, WRITE);
    float *tanh_cells = take(&held, o[5], "tanh_cells", F32, N * U, WRITE);
    const int ok = !PyErr_Occurred() && packed_steps_ok(offsets, J, N, N);
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        lstm_forward(gates, recurrent, offsets, J, N, U, states, cells, tanh_cells);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* lstm_backward(gates (N, 4U), recurrent_t (4U, U), cells (N+1, U), tanh_cells (N, U),
 *               d_states (N, U) f32 or None, offsets (J+1,) int64, dh (B, U), dc (B, U) f32,
 *               J, N, U, B) */
static PyObject *py_lstm_backward(PyObject *self, PyObject *args)
{
    PyObject *o[8];
    Py_ssize_t J, N, U, B;
    if (!PyArg_ParseTuple(args, "OOOOOOOOnnnn", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &J, &N,
                          &U, &B))
        return NULL;
    if (!dims_ok("lstm_backward", 1, 4, (Py_ssize_t[]){J, N, U, B}) || !dims_ok("lstm_backward", 0, 1, (Py_ssize_t[]){4 * U}))
        return NULL;
    Held held = {.count = 0};
    float *gates = take(&held, o[0], "gates", F32, N * 4 * U, WRITE);
    const float *recurrent_t = take(&held, o[1], "recurrent_t", F32, 4 * U * U, READ);
    const float *cells = take(&held, o[2], "cells", F32, (N + 1) * U, READ);
    const float *tanh_cells = take(&held, o[3], "tanh_cells", F32, N * U, READ);
    const float *d_states = o[4] == Py_None ? NULL : take(&held, o[4], "d_states", F32, N * U, READ);
    const int64_t *offsets = take(&held, o[5], "offsets", I64, J + 1, READ);
    float *dh = take(&held, o[6], "dh", F32, B * U, WRITE);
    float *dc = take(&held, o[7], "dc", F32, B * U, WRITE);
    const int ok = !PyErr_Occurred() && packed_steps_ok(offsets, J, N, B);
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        lstm_backward(gates, recurrent_t, cells, tanh_cells, d_states, offsets, J, N, U, dh, dc);
        Py_END_ALLOW_THREADS
    }
    release(&held);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- the module */
static PyMethodDef methods[] = {
    {"review_row_counts", py_review_row_counts, METH_VARARGS, "Each review's distinct rows and their counts."},
    {"pooled_embedding_forward", py_pooled_embedding_forward, METH_VARARGS, "Embedding + average pooling."},
    {"distinct_rows", py_distinct_rows, METH_VARARGS, "The distinct rows of the pairs, ascending."},
    {"pooled_embedding_backward", py_pooled_embedding_backward, METH_VARARGS, "The gradient summed per row."},
    {"masked_pool_forward", py_masked_pool_forward, METH_VARARGS, "Masked average pooling from the ids."},
    {"sgd_scatter", py_sgd_scatter, METH_VARARGS, "Plain SGD on the masked average's rows."},
    {"adam_dense", py_adam_dense, METH_VARARGS, "Keras Adam on a dense weight."},
    {"adam_rows", py_adam_rows, METH_VARARGS, "Keras Adam on a table with a row-sparse gradient."},
    {"lazy_adam_rows", py_lazy_adam_rows, METH_VARARGS, "Lazy Adam on the given rows."},
    {"pooled_lazy_adam", py_pooled_lazy_adam, METH_VARARGS, "Lazy Adam from the ids of a masked average."},
    {"review_steps_sgd", py_review_steps_sgd, METH_VARARGS, "Plain SGD, one review at a time."},
    {"review_steps_adagrad", py_review_steps_adagrad, METH_VARARGS, "Row-wise Adagrad, one review at a time."},
    {"code_points_present", py_code_points_present, METH_VARARGS, "Mark the code points of a UTF-8 text."},
    {"tokenize", py_tokenize, METH_VARARGS, "tfds's prepared tokens of many UTF-8 texts."},
    {"encode_tokens", py_encode_tokens, METH_VARARGS, "Subword ids of distinct tokens (greedy longest match)."},
    {"gather_ids", py_gather_ids, METH_VARARGS, "Every token occurrence's ids, text by text."},
    {"lstm_forward", py_lstm_forward, METH_VARARGS, "One LSTM direction's recurrence over packed steps."},
    {"lstm_backward", py_lstm_backward, METH_VARARGS, "Backpropagation through one LSTM direction's steps."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_npembed_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__npembed_native(void) { return PyModule_Create(&module); }
