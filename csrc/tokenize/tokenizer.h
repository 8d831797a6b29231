/* WordPiece, byte-level BPE and SentencePiece Unigram tokenizers with the behaviour of HuggingFace
 * `tokenizers`, and fastBPE (BERTweet) with the behaviour of transformers' BertweetTokenizer.
 *
 * Text enters as Unicode code points (uint32). Offsets are code-point offsets into the
 * original text of their sequence (for pre-split words: into their word), as HF's Python
 * binding reports them. No function here reads Python objects; all return ME_* codes. */
#ifndef MULTIENC_TOKENIZE_TOKENIZER_H
#define MULTIENC_TOKENIZE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* ME_TOK_FASTBPE: fastBPE codes over the chars of a word, the last char marked "</w>"; each round
 * merges every occurrence (left to right) of the adjacent pair of lowest rank; a piece other than
 * the word's last is looked up as its text + "@@", a one-char word as itself; a piece missing from
 * the vocabulary is unk_id (required). */
enum { ME_TOK_WORDPIECE = 1, ME_TOK_BPE = 2, ME_TOK_UNIGRAM = 3, ME_TOK_FASTBPE = 4 };
/* ME_PRE_STEPS: the pre-tokenizers added with me_tok_add_pretokenizer, in order (the Unigram
 * pipelines; their normalizers come from me_tok_add_normalizer). ME_PRE_PY_WORDS: the words of
 * Python's re.findall(r"\S+\n?", text): runs of chars outside str.isspace(), each with one
 * directly following "\n" (BertweetTokenizer). */
enum { ME_PRE_NONE = 0, ME_PRE_BERT = 1, ME_PRE_BYTELEVEL = 2, ME_PRE_STEPS = 3, ME_PRE_PY_WORDS = 4 };
/* Post-processing: none (type ids 0 / 1, no special tokens) or a template. TemplateProcessing,
 * BertProcessing and RobertaProcessing are all expressed as templates (RobertaProcessing: every
 * type id 0, which HF applies with and without special tokens alike). */
enum { ME_POST_NONE = 0, ME_POST_TEMPLATE = 1 };

typedef struct {
    int model;            /* ME_TOK_* */
    int bert_normalizer;  /* BertNormalizer present */
    int clean_text, handle_chinese_chars, strip_accents, lowercase;
    int pre_tokenizer;    /* ME_PRE_* */
    int add_prefix_space; /* ByteLevel pre-tokenizer */
    int use_regex;        /* ByteLevel pre-tokenizer */
    int post;             /* ME_POST_* */
    int trim_offsets;     /* byte-level offset trimming in the post-processor */
    int post_add_prefix_space;
    int32_t unk_id;       /* WordPiece: required; BPE: -1 for none */
    int max_input_chars_per_word;
    int python_truncation; /* longest_first as transformers' Python tokenizers split it (BertweetTokenizer) */
} me_tok_options;

/* Added-token flags (HF AddedToken). */
enum { ME_AT_SINGLE_WORD = 1, ME_AT_LSTRIP = 2, ME_AT_RSTRIP = 4, ME_AT_NORMALIZED = 8, ME_AT_SPECIAL = 16 };

/* One template item: a sequence (ME_TMPL_A / ME_TMPL_B) or a special token id, with its type id.
 * A special token may name its string (str, str_len bytes of UTF-8; NULL: none): tokenizers shows the
 * template's token string, which differs from the id's vocabulary string when a template names a
 * token the vocabulary spells otherwise. me_tok_set_template copies it. */
enum { ME_TMPL_A = -1, ME_TMPL_B = -2 };
typedef struct {
    int32_t what;
    int32_t type_id;
    const char *str;
    size_t str_len;
} me_tmpl_item;

typedef struct me_tok me_tok;
typedef struct me_ws me_ws;

/* One encoding; word_ids / seq_ids are -1 for none; offsets hold 2 values per token.
 * Token strings: an added token found in the text is the text it matched (with the whitespace
 * lstrip/rstrip took in), as in tokenizers; its string is in sbuf at sref[i] (a uint32 byte length,
 * then UTF-8). Other tokens have sref[i] = -1: their string is me_tok_id_to_token(id). */
typedef struct {
    int32_t *ids, *type_ids, *word_ids, *seq_ids, *offsets, *sref;
    uint8_t *special;
    size_t n, cap;
    char *sbuf;
    size_t slen, scap;
} me_enc;

/* One input sequence: text, or (nwords > 0) words given separately: word i is
 * text[word_start[i] .. word_start[i + 1]). */
typedef struct {
    const uint32_t *text;
    size_t len;
    const size_t *word_start; /* nwords + 1 entries, or NULL */
    size_t nwords;
} me_seq;

int me_tok_new(const me_tok_options *opt, me_tok **out, char *err);
void me_tok_free(me_tok *t);
/* Vocabulary entry (UTF-8 token). A later entry with the same token replaces the earlier. */
int me_tok_add_vocab(me_tok *t, const char *tok, size_t len, int32_t id, char *err);
/* BPE merge of two vocabulary tokens, in rank order (call in merges-file order); a repeated pair
 * takes the later rank. ME_TOK_FASTBPE: a merge of two symbols (strings that need not be in the
 * vocabulary; "</w>" ends a word's last). */
int me_tok_add_merge(me_tok *t, const char *a, size_t alen, const char *b, size_t blen, char *err);
/* Added token (content as code points and UTF-8). */
int me_tok_add_added(me_tok *t, const uint32_t *content, size_t ncp, const char *utf8, size_t nbytes,
                     int32_t id, int flags, char *err);
int me_tok_set_template(me_tok *t, int pair, const me_tmpl_item *items, size_t n, char *err);

/* One normalizer of the chain that runs when there is no BertNormalizer (kinds: ME_NORM_* of
 * tokenize/normalizers.h). Everything is copied. */
typedef struct {
    int kind;
    int left, right;          /* Strip */
    const uint8_t *blob;      /* Precompiled: the decoded precompiled_charsmap */
    size_t blob_len;
    const int32_t *prog;      /* Replace: the pattern, compiled as normalizers.h describes */
    size_t nprog;
    const uint32_t *content;  /* Replace: the replacement */
    size_t ncontent;
} me_norm_def;
int me_tok_add_normalizer(me_tok *t, const me_norm_def *def, char *err);

/* Pre-tokenizers of ME_PRE_STEPS. Split behaviours are tokenizers' SplitDelimiterBehavior. */
enum { ME_PRE_STEP_METASPACE = 1, ME_PRE_STEP_WHITESPACE_SPLIT = 2, ME_PRE_STEP_PUNCTUATION = 3 };
enum { ME_PREPEND_ALWAYS = 0, ME_PREPEND_FIRST = 1, ME_PREPEND_NEVER = 2 };
enum { ME_SPLIT_REMOVED = 0, ME_SPLIT_ISOLATED = 1, ME_SPLIT_MERGED_PREVIOUS = 2, ME_SPLIT_MERGED_NEXT = 3,
       ME_SPLIT_CONTIGUOUS = 4 };
/* Metaspace: replacement char, prepend scheme, split; Punctuation: behavior. */
int me_tok_add_pretokenizer(me_tok *t, int kind, uint32_t replacement, int prepend_scheme, int split, int behavior,
                            char *err);

/* Unigram: the vocabulary must have been added as ids 0 .. n-1 (me_tok_add_vocab, in id order);
 * scores[i] is the score of id i. The model's unknown id is options.unk_id (-1: none). */
int me_tok_set_unigram(me_tok *t, const double *scores, size_t n, int byte_fallback, char *err);
/* Checks the configuration once everything is added. */
int me_tok_finalize(me_tok *t, char *err);

/* UTF-8 string of a token id (added content or vocabulary token); NULL if unknown. */
const char *me_tok_id_to_token(const me_tok *t, int32_t id, size_t *len);
/* String of token i of an encoding (see me_enc); NULL if its id is unknown. */
const char *me_enc_token(const me_tok *t, const me_enc *e, size_t i, size_t *len);
/* Number of special tokens the post-processor adds (pair = 0 or 1). */
size_t me_tok_num_added(const me_tok *t, int pair);

/* Per-thread scratch space (holds the BPE word cache). */
me_ws *me_ws_new(void);
void me_ws_free(me_ws *w);

/* Encode one input (b may be NULL). max_length < 0: no truncation; otherwise longest_first
 * truncation to max_length including special tokens (as HF with add_special_tokens). */
int me_tok_encode(const me_tok *t, me_ws *w, const me_seq *a, const me_seq *b, int add_special_tokens,
                  long max_length, me_enc *out, char *err);

/* Where one input's encoding lies in the batch results: tokens [start, start + len) of store[store]. */
typedef struct {
    int32_t store;
    size_t start, len;
} me_batch_item;

/* Encode n inputs (b[i] NULL for single sequences) with up to nws threads, one workspace each.
 * Thread k appends its encodings to store[k] (nws stores, emptied first); item[i] says where
 * input i lies. On failure returns the status, sets *failed to the input's index and fills err. */
int me_tok_encode_batch(const me_tok *t, me_ws **ws, int nws, const me_seq *a, const me_seq *const *b, size_t n,
                        int add_special_tokens, long max_length, me_enc *store, me_batch_item *item,
                        size_t *failed, char *err);

void me_enc_free(me_enc *e);

#endif
