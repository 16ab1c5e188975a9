/*
 * Converting safetensors tensors to float and int32. Tensor data may sit
 * at any byte offset in the file, so every element is read with memcpy.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "half.h"
#include "multiround/safetensors.h"
#include "safetensors_internal.h"

/* Enough room for a shape string in an error message. */
#define SHAPE_TEXT_SIZE 128


/* Finds name and checks that count matches its element count. */
static mr_status find_for_read(const mr_safetensors *file, const char *name, int64_t count,
                               const mr_safetensors_tensor **out, mr_error *err) {
    const mr_safetensors_tensor *t = mr_safetensors_tensor_find(file, name);
    *out = t;
    if (t == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "safetensors: '%s' has no tensor '%s'; check the name",
                            mr_st_file_name(file), name);
    }
    if (count != t->numel) {
        char shape_text[SHAPE_TEXT_SIZE];
        mr_st_format_shape(shape_text, sizeof shape_text, t->ndim, t->shape);
        return mr_error_set(err, MR_ERR_SHAPE,
                            "safetensors: '%s': tensor '%s' has shape %s (%" PRId64
                            " elements) but the destination holds %" PRId64,
                            mr_st_file_name(file), name, shape_text, t->numel, count);
    }
    return MR_OK;
}

mr_status mr_safetensors_read_f32(const mr_safetensors *file, const char *name, float *dst,
                                  int64_t count, mr_error *err) {
    const mr_safetensors_tensor *t = NULL;
    mr_status status = find_for_read(file, name, count, &t, err);
    if (status != MR_OK) {
        return status;
    }

    /* Tensor data may sit at any byte offset, so elements are copied with
     * memcpy before use. */
    const uint8_t *src = t->data;
    switch (t->dtype) {
    case MR_SAFETENSORS_F32:
        if (count > 0) {
            memcpy(dst, src, (size_t)t->size);
        }
        return MR_OK;
    case MR_SAFETENSORS_F16:
    case MR_SAFETENSORS_BF16: {
        bool is_f16 = t->dtype == MR_SAFETENSORS_F16;
        for (int64_t i = 0; i < count; i++) {
            uint16_t bits;
            memcpy(&bits, src + 2 * i, sizeof bits);
            dst[i] = is_f16 ? mr_f16_to_f32(bits) : mr_bf16_to_f32(bits);
        }
        return MR_OK;
    }
    case MR_SAFETENSORS_F64:
        for (int64_t i = 0; i < count; i++) {
            double value;
            memcpy(&value, src + 8 * i, sizeof value);
            dst[i] = (float)value;
        }
        return MR_OK;
    default:
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "safetensors: '%s': tensor '%s' has dtype %s, which cannot be read "
                            "as float; float reads accept F32, F16, BF16 and F64",
                            mr_st_file_name(file), name, mr_safetensors_dtype_name(t->dtype));
    }
}

/* Reads element i of an integer or BOOL tensor as a 64-bit value;
 * *is_unsigned_large is set for U64 values above INT64_MAX. */
static int64_t integer_element(const mr_safetensors_tensor *t, int64_t i,
                               bool *is_unsigned_large) {
    const uint8_t *src = (const uint8_t *)t->data + (size_t)i * mr_safetensors_dtype_size(t->dtype);
    *is_unsigned_large = false;
    switch (t->dtype) {
    case MR_SAFETENSORS_BOOL:
    case MR_SAFETENSORS_U8:
        return src[0];
    case MR_SAFETENSORS_I8: {
        int8_t v;
        memcpy(&v, src, sizeof v);
        return v;
    }
    case MR_SAFETENSORS_I16: {
        int16_t v;
        memcpy(&v, src, sizeof v);
        return v;
    }
    case MR_SAFETENSORS_U16: {
        uint16_t v;
        memcpy(&v, src, sizeof v);
        return v;
    }
    case MR_SAFETENSORS_I32: {
        int32_t v;
        memcpy(&v, src, sizeof v);
        return v;
    }
    case MR_SAFETENSORS_U32: {
        uint32_t v;
        memcpy(&v, src, sizeof v);
        return v;
    }
    case MR_SAFETENSORS_I64: {
        int64_t v;
        memcpy(&v, src, sizeof v);
        return v;
    }
    case MR_SAFETENSORS_U64: {
        uint64_t v;
        memcpy(&v, src, sizeof v);
        *is_unsigned_large = v > (uint64_t)INT64_MAX;
        return *is_unsigned_large ? INT64_MAX : (int64_t)v;
    }
    default:
        return 0;
    }
}

bool mr_st_is_integer(mr_safetensors_dtype dtype) {
    switch (dtype) {
    case MR_SAFETENSORS_BOOL:
    case MR_SAFETENSORS_U8:
    case MR_SAFETENSORS_I8:
    case MR_SAFETENSORS_I16:
    case MR_SAFETENSORS_U16:
    case MR_SAFETENSORS_I32:
    case MR_SAFETENSORS_U32:
    case MR_SAFETENSORS_I64:
    case MR_SAFETENSORS_U64:
        return true;
    default:
        return false;
    }
}

mr_status mr_st_convert_i32(const mr_safetensors *file, const mr_safetensors_tensor *t,
                            int32_t *dst, mr_error *err) {
    if (!mr_st_is_integer(t->dtype)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "safetensors: '%s': tensor '%s' has dtype %s, which cannot be read "
                            "as int32; int32 reads accept BOOL and integer dtypes",
                            mr_st_file_name(file), t->name, mr_safetensors_dtype_name(t->dtype));
    }
    for (int64_t i = 0; i < t->numel; i++) {
        bool is_unsigned_large;
        int64_t value = integer_element(t, i, &is_unsigned_large);
        if (is_unsigned_large || value < INT32_MIN || value > INT32_MAX) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "safetensors: '%s': tensor '%s' element %" PRId64
                                " is %s%" PRId64 ", outside the int32 range",
                                mr_st_file_name(file), t->name, i,
                                is_unsigned_large ? "above " : "", value);
        }
        if (dst != NULL) {
            dst[i] = (int32_t)value;
        }
    }
    return MR_OK;
}

mr_status mr_safetensors_read_i32(const mr_safetensors *file, const char *name, int32_t *dst,
                                  int64_t count, mr_error *err) {
    const mr_safetensors_tensor *t = NULL;
    mr_status status = find_for_read(file, name, count, &t, err);
    if (status != MR_OK) {
        return status;
    }
    return mr_st_convert_i32(file, t, dst, err);
}
