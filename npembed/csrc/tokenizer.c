/* tfds's text tokens and subword ids in C: the twin of subwords_fast.py's Python tokenizer
 * and of SubwordEncoder._token_to_ids (datasets/subwords.py), on UTF-8 bytes.  Texts arrive as
 * one buffer with byte offsets; a code point is a word character (Python's regular-expression
 * \w) where word[code point] is 1, a table the caller fills from Python for the code points the
 * texts hold (so that the Unicode rules are Python's own).  No Python here: results come back in
 * Growing arrays that the binding hands over as bytearrays. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

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

/* (0x110000,) present[c] = 1 for every code point c of text (n bytes); 0 when it is not UTF-8. */
int code_points_present(const uint8_t *text, int64_t n, uint8_t *present)
{
    for (int64_t i = 0; i < n;) {
        const int32_t c = utf8_next(text, n, &i);
        if (c < 0) return 0;
        present[c] = 1;
    }
    return 1;
}

/* Text r is text[offsets[r]:offsets[r+1]] (offsets (R+1,), checked by the caller); its tokens
 * are index[token_offsets[r]:token_offsets[r+1]] (int32 numbers of distinct tokens, in order
 * of first sight); distinct token n, prepared, is the n-th piece of the bytes `prepared`,
 * prepared_chars[n] (int64) code points long.  The Growing arrays start empty and are the
 * caller's to free (also on failure).  0: no memory. */
int tokenize_texts(const uint8_t *text, const int64_t *offsets, int64_t R, const uint8_t *word,
                   int64_t *token_offsets, Growing *index, Growing *prepared, Growing *prepared_chars)
{
    Tokenizer k = {.text = text, .word = word};
    k.index.item = 4;
    k.prepared.item = 1;
    k.prepared_chars.item = 8;
    int memory = numbering_init(&k.tokens, 1 << 16);
    for (int64_t r = 0; r < R && memory; r++) {
        token_offsets[r] = k.index.size;
        memory = tokenize_text(&k, offsets[r], offsets[r + 1]);
    }
    token_offsets[R] = k.index.size;
    numbering_free(&k.tokens);
    *index = k.index;
    *prepared = k.prepared;
    *prepared_chars = k.prepared_chars;
    return memory;
}

/* Token t is tokens[token_ends[t-1]:token_ends[t]] (UTF-8), subword s likewise (both checked
 * by the caller); token t's ids (int32, encode's: 1 + SubwordEncoder._token_to_ids) go to
 * ids[id_offsets[t]:id_offsets[t+1]] (id_offsets (T+1,)).  A subword listed twice has its last
 * id, as in the encoder's dict.  ids starts empty and is the caller's to free.  0: no memory. */
int encode_tokens(const uint8_t *tokens, const int64_t *token_ends, int64_t T, const uint8_t *subwords,
                  const int64_t *subword_ends, int64_t S, int64_t max_chars, int64_t *id_offsets, Growing *ids)
{
    Numbering table;
    Growing char_start = {.item = 8};
    ids->item = 4;
    int64_t *subword_id = malloc((S + 1) * sizeof(int64_t));
    int memory = subword_id != NULL && numbering_init(&table, S);
    if (!memory) {
        free(subword_id);
        return 0;
    }
    for (int64_t s = 0; s < S && memory; s++) {
        int is_new;
        const int64_t start = s ? subword_ends[s - 1] : 0;
        const int64_t n = numbering_find(&table, subwords + start, subword_ends[s] - start, &is_new);
        if (n < 0) memory = 0;
        else subword_id[n] = s;                                   /* a repeat: the last id */
    }
    for (int64_t t = 0; t < T && memory; t++) {
        const int64_t start = t ? token_ends[t - 1] : 0;
        id_offsets[t] = ids->size;
        memory = encode_token(tokens + start, token_ends[t] - start, &table, subword_id, S, max_chars,
                              &char_start, ids);
    }
    id_offsets[T] = ids->size;
    numbering_free(&table);
    free(subword_id);
    free(char_start.data);
    return memory;
}

/* How many ids gather_ids writes for the occurrences index (M,) of tokens whose ids lie at
 * id_offsets (T+1,); -1 when an occurrence names no token. */
int64_t gathered_length(const int32_t *index, int64_t M, const int64_t *id_offsets, int64_t T)
{
    int64_t total = 0;
    for (int64_t o = 0; o < M; o++) {
        if (index[o] < 0 || index[o] >= T) return -1;
        total += id_offsets[index[o] + 1] - id_offsets[index[o]];
    }
    return total;
}

/* ids (gathered_length,): the ids of every token occurrence in order; text r's are
 * ids[offsets[r]:offsets[r+1]] (offsets (R+1,) written here); token_offsets (R+1,) as
 * tokenize_texts gives them, token_ids and id_offsets as encode_tokens gives them. */
void gather_ids(const int32_t *index, const int64_t *id_offsets, const int32_t *token_ids,
                const int64_t *token_offsets, int64_t R, int32_t *ids, int64_t *offsets)
{
    int64_t written = 0;
    for (int64_t r = 0; r < R; r++) {
        offsets[r] = written;
        for (int64_t o = token_offsets[r]; o < token_offsets[r + 1]; o++) {
            const int64_t from = id_offsets[index[o]], n = id_offsets[index[o] + 1] - from;
            memcpy(ids + written, token_ids + from, n * sizeof(int32_t));
            written += n;
        }
    }
    offsets[R] = written;
}

void growing_free(Growing *g)
{
    free(g->data);
    g->data = NULL;
    g->size = g->capacity = 0;
}
