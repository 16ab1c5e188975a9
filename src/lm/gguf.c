/* GGUF reader. */
#include "multiround/gguf.h"

/* TODO: stub until the reader lands; every open fails. */
const char *mr_gguf_type_name(mr_gguf_type type) { (void)type; return "?"; }
mr_status mr_gguf_open(const char *path, mr_gguf **out, mr_error *err) {
    if (out != NULL) {
        *out = NULL;
    }
    return mr_error_set(err, MR_ERR_UNSUPPORTED, "gguf: %s: the reader is not built yet", path);
}
void mr_gguf_close(mr_gguf *gguf) { (void)gguf; }
uint32_t mr_gguf_version(const mr_gguf *gguf) { (void)gguf; return 0; }
uint32_t mr_gguf_alignment(const mr_gguf *gguf) { (void)gguf; return 0; }
uint64_t mr_gguf_data_offset(const mr_gguf *gguf) { (void)gguf; return 0; }
int64_t mr_gguf_kv_count(const mr_gguf *gguf) { (void)gguf; return 0; }
const char *mr_gguf_kv_key(const mr_gguf *gguf, int64_t i) { (void)gguf; (void)i; return NULL; }
mr_gguf_type mr_gguf_kv_type(const mr_gguf *gguf, int64_t i) { (void)gguf; (void)i; return MR_GGUF_U8; }
int64_t mr_gguf_find_key(const mr_gguf *gguf, const char *key) { (void)gguf; (void)key; return -1; }
mr_status mr_gguf_get_u32(const mr_gguf *gguf, const char *key, uint32_t *out, mr_error *err) {
    (void)gguf; (void)out;
    return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
}
mr_status mr_gguf_get_i64(const mr_gguf *gguf, const char *key, int64_t *out, mr_error *err) {
    (void)gguf; (void)out;
    return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
}
mr_status mr_gguf_get_f32(const mr_gguf *gguf, const char *key, float *out, mr_error *err) {
    (void)gguf; (void)out;
    return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
}
mr_status mr_gguf_get_bool(const mr_gguf *gguf, const char *key, bool *out, mr_error *err) {
    (void)gguf; (void)out;
    return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
}
mr_status mr_gguf_get_string(const mr_gguf *gguf, const char *key, const char **out, size_t *len,
                             mr_error *err) {
    (void)gguf; (void)out; (void)len;
    return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
}
mr_status mr_gguf_get_array(const mr_gguf *gguf, const char *key, mr_gguf_type *elem_type,
                            int64_t *count, const void **data, mr_error *err) {
    (void)gguf; (void)elem_type; (void)count; (void)data;
    return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
}
mr_status mr_gguf_array_string(const mr_gguf *gguf, const char *key, int64_t j, const char **out,
                               size_t *len, mr_error *err) {
    (void)gguf; (void)j; (void)out; (void)len;
    return mr_error_set(err, MR_ERR_NOT_FOUND, "gguf: key '%s' not found", key);
}
int64_t mr_gguf_tensor_count(const mr_gguf *gguf) { (void)gguf; return 0; }
const mr_gguf_tensor *mr_gguf_tensor_at(const mr_gguf *gguf, int64_t i) { (void)gguf; (void)i; return NULL; }
const mr_gguf_tensor *mr_gguf_find_tensor(const mr_gguf *gguf, const char *name) {
    (void)gguf; (void)name;
    return NULL;
}
