/*
 * The SQLite layout of a passage index, shared by the builder (index.c)
 * and the reader (retriever.c).
 *
 *   meta(key, value)             format name, layout version, tokenizer
 *   passages(rowid, id, id_is_integer, title, text, metadata)
 *   passages_fts(title, text)    FTS5, external content: passages
 *
 * passages_fts stores only the index; its rowids are those of passages.
 */
#ifndef MR_RETRIEVAL_SCHEMA_H
#define MR_RETRIEVAL_SCHEMA_H

/* The value of meta.format in every index. */
#define MR_INDEX_FORMAT "multiround-passages"
/* The layout version in meta.version; a reader rejects other versions. */
#define MR_INDEX_VERSION "1"
/*
 * unicode61 folds case and splits at Unicode punctuation and spaces;
 * remove_diacritics 2 makes "Nenițescu" match "Nenitescu". porter applies
 * the Porter stemmer, so inflected English forms such as "directed" and
 * "directs" index as one term.
 */
#define MR_INDEX_TOKENIZER "porter unicode61 remove_diacritics 2"

#endif /* MR_RETRIEVAL_SCHEMA_H */
