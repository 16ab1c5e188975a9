/* GGUF writer. */
#include "multiround/gguf.h"

/* TODO: stub until the writer lands; every call fails. */
mr_gguf_writer *mr_gguf_writer_create(void) { return NULL; }
void mr_gguf_writer_free(mr_gguf_writer *w) { (void)w; }
#define MR_GGUF_WRITER_STUB(err) \
    mr_error_set(err, MR_ERR_UNSUPPORTED, "gguf: the writer is not built yet")
mr_status mr_gguf_writer_set_u32(mr_gguf_writer *w, const char *key, uint32_t v, mr_error *err) {
    (void)w; (void)key; (void)v; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_set_f32(mr_gguf_writer *w, const char *key, float v, mr_error *err) {
    (void)w; (void)key; (void)v; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_set_bool(mr_gguf_writer *w, const char *key, bool v, mr_error *err) {
    (void)w; (void)key; (void)v; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_set_string(mr_gguf_writer *w, const char *key, const char *v, mr_error *err) {
    (void)w; (void)key; (void)v; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_set_array(mr_gguf_writer *w, const char *key, mr_gguf_type elem_type,
                                   const void *data, int64_t count, mr_error *err) {
    (void)w; (void)key; (void)elem_type; (void)data; (void)count; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_set_strings(mr_gguf_writer *w, const char *key, const char *const *v,
                                     const size_t *lens, int64_t count, mr_error *err) {
    (void)w; (void)key; (void)v; (void)lens; (void)count; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_copy_kv(mr_gguf_writer *w, const mr_gguf *from, mr_error *err) {
    (void)w; (void)from; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_add_tensor(mr_gguf_writer *w, const char *name, mr_qtype type, int n_dims,
                                    const int64_t *ne, const void *data, mr_error *err) {
    (void)w; (void)name; (void)type; (void)n_dims; (void)ne; (void)data; return MR_GGUF_WRITER_STUB(err);
}
mr_status mr_gguf_writer_write(mr_gguf_writer *w, const char *path, mr_error *err) {
    (void)w; (void)path; return MR_GGUF_WRITER_STUB(err);
}
