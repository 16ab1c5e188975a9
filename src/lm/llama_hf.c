/*
 * Llama and Qwen2 models in Hugging Face folders: loading config.json with
 * model.safetensors or its shards, writing folders back, and conversion
 * between folders and GGUF files.
 *
 * Models that rotate adjacent pairs have the rows of q_proj and k_proj
 * (and of their biases) permuted on the way in and back on the way out.
 * hf_source_row() and the overview in llama.h give the mapping.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hf_internal.h"
#include "llama_internal.h"
#include "multiround/fileio.h"
#include "multiround/lora.h"
#include "multiround/safetensors.h"

/* Longest path this file builds. */
#define HF_PATH_MAX 4096
/* Longest Hugging Face tensor name of the Llama weight list, with NUL. */
#define HF_NAME_MAX 96
/* Largest config.json and model.safetensors.index.json accepted. */
#define HF_CONFIG_MAX_BYTES (1u << 20)
#define HF_INDEX_MAX_BYTES (64u << 20)
/* Largest tokenizer file copied from folder to folder. */
#define HF_TOKENIZER_MAX_BYTES (512u << 20)

/* Files copied from the source folder when a folder is written. */
static const char *const tokenizer_files[] = {
    "tokenizer.json",    "tokenizer_config.json", "special_tokens_map.json",
    "generation_config.json", "tokenizer.model", "tokenizer.gguf",
};

static bool is_directory(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

static bool is_file(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 && S_ISREG(info.st_mode);
}

/* ------------------------------------------------------------------------
 * Checkpoint files: one model.safetensors or the shards of an index
 * ------------------------------------------------------------------------ */

typedef struct hf_checkpoint {
    const char *dir;
    cJSON *weight_map;       /* name -> shard file, or NULL for one file */
    cJSON *index;            /* the parsed index that owns weight_map */
    mr_safetensors **files;  /* open files, in the order first needed */
    char (*file_names)[256];
    int file_count;
    int file_capacity;
} hf_checkpoint;

static void checkpoint_close(hf_checkpoint *ckpt) {
    for (int i = 0; i < ckpt->file_count; i++) {
        mr_safetensors_close(ckpt->files[i]);
    }
    free(ckpt->files);
    free(ckpt->file_names);
    cJSON_Delete(ckpt->index);
    memset(ckpt, 0, sizeof *ckpt);
}

/* Returns the open file called file_name in the folder, opening it on
 * first use. */
static mr_safetensors *checkpoint_file(hf_checkpoint *ckpt, const char *file_name,
                                       mr_error *err) {
    for (int i = 0; i < ckpt->file_count; i++) {
        if (strcmp(ckpt->file_names[i], file_name) == 0) {
            return ckpt->files[i];
        }
    }
    if (strchr(file_name, '/') != NULL || strlen(file_name) >= sizeof ckpt->file_names[0]) {
        mr_error_set(err, MR_ERR_FORMAT,
                     "hf: shard name \"%s\" in %s/model.safetensors.index.json must be a plain "
                     "file name in the folder",
                     file_name, ckpt->dir);
        return NULL;
    }
    if (ckpt->file_count == ckpt->file_capacity) {
        int capacity = ckpt->file_capacity == 0 ? 4 : 2 * ckpt->file_capacity;
        mr_safetensors **files = realloc(ckpt->files, (size_t)capacity * sizeof *files);
        if (files != NULL) {
            ckpt->files = files;
        }
        char(*names)[256] = realloc(ckpt->file_names, (size_t)capacity * sizeof *names);
        if (names != NULL) {
            ckpt->file_names = names;
        }
        if (files == NULL || names == NULL) {
            mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory to open %s", file_name);
            return NULL;
        }
        ckpt->file_capacity = capacity;
    }

    char path[HF_PATH_MAX];
    mr_safetensors *file = NULL;
    if (mr_path_join(path, sizeof path, ckpt->dir, file_name, err) != MR_OK ||
        mr_safetensors_open(path, &file, err) != MR_OK) {
        return NULL;
    }
    snprintf(ckpt->file_names[ckpt->file_count], sizeof ckpt->file_names[0], "%s", file_name);
    ckpt->files[ckpt->file_count++] = file;
    return file;
}

/* Opens model.safetensors, or reads the index of a sharded checkpoint. */
static mr_status checkpoint_open(hf_checkpoint *ckpt, const char *dir, mr_error *err) {
    memset(ckpt, 0, sizeof *ckpt);
    ckpt->dir = dir;
    char path[HF_PATH_MAX];
    mr_status status = mr_path_join(path, sizeof path, dir, "model.safetensors", err);
    if (status != MR_OK) {
        return status;
    }
    if (is_file(path)) {
        return checkpoint_file(ckpt, "model.safetensors", err) != NULL ? MR_OK : err->status;
    }

    status = mr_path_join(path, sizeof path, dir, "model.safetensors.index.json", err);
    if (status != MR_OK) {
        return status;
    }
    if (!is_file(path)) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "hf: %s has neither model.safetensors nor "
                            "model.safetensors.index.json",
                            dir);
    }
    status = hf_json_read(path, HF_INDEX_MAX_BYTES, &ckpt->index, err);
    if (status != MR_OK) {
        return status;
    }
    ckpt->weight_map = cJSON_GetObjectItemCaseSensitive(ckpt->index, "weight_map");
    if (!cJSON_IsObject(ckpt->weight_map)) {
        return mr_error_set(err, MR_ERR_FORMAT, "hf: %s has no \"weight_map\" object", path);
    }
    return MR_OK;
}

/* Finds tensor name in the checkpoint. Returns NULL when it is absent (err
 * untouched) or when its shard cannot be opened (err filled, *failed set). */
static const mr_safetensors_tensor *checkpoint_find(hf_checkpoint *ckpt, const char *name,
                                                    mr_safetensors **file, bool *failed,
                                                    mr_error *err) {
    *failed = false;
    const char *file_name = "model.safetensors";
    if (ckpt->weight_map != NULL) {
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(ckpt->weight_map, name);
        if (entry == NULL) {
            return NULL;
        }
        if (!cJSON_IsString(entry)) {
            *failed = true;
            mr_error_set(err, MR_ERR_FORMAT,
                         "hf: %s/model.safetensors.index.json: the shard of %s is not a string",
                         ckpt->dir, name);
            return NULL;
        }
        file_name = entry->valuestring;
    }
    *file = checkpoint_file(ckpt, file_name, err);
    if (*file == NULL) {
        *failed = true;
        return NULL;
    }
    const mr_safetensors_tensor *t = mr_safetensors_tensor_find(*file, name);
    if (t == NULL && ckpt->weight_map != NULL) {
        *failed = true;
        mr_error_set(err, MR_ERR_FORMAT,
                     "hf: %s/model.safetensors.index.json places %s in %s, which lacks it",
                     ckpt->dir, name, file_name);
    }
    return t;
}

/* Number of tensors in all shards (each opened) of the checkpoint. */
static int64_t checkpoint_tensor_count(hf_checkpoint *ckpt, mr_error *err) {
    if (ckpt->weight_map != NULL) {
        const cJSON *entry = NULL;
        cJSON_ArrayForEach(entry, ckpt->weight_map) {
            if (cJSON_IsString(entry) && checkpoint_file(ckpt, entry->valuestring, err) == NULL) {
                return -1;
            }
        }
    }
    int64_t total = 0;
    for (int i = 0; i < ckpt->file_count; i++) {
        total += mr_safetensors_tensor_count(ckpt->files[i]);
    }
    return total;
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

/* The storage type of a safetensors float dtype, or false for others. */
static bool qtype_of_dtype(mr_safetensors_dtype dtype, mr_qtype *type) {
    switch (dtype) {
    case MR_SAFETENSORS_F32:
        *type = MR_QTYPE_F32;
        return true;
    case MR_SAFETENSORS_F16:
        *type = MR_QTYPE_F16;
        return true;
    case MR_SAFETENSORS_BF16:
        *type = MR_QTYPE_BF16;
        return true;
    default:
        return false;
    }
}

/* Copies tensor t into weight index: matrices keep their storage type with
 * q/k rows permuted when the model rotates adjacent pairs, vectors become
 * F32. */
static mr_status load_weight(mr_llama *model, int index, const char *hf_name,
                             mr_safetensors *file, const mr_safetensors_tensor *t,
                             mr_error *err) {
    const mr_llama_weight *w = &model->weights[index];
    bool shape_ok = t->ndim == w->n_dims &&
                    (w->n_dims == 1 ? t->shape[0] == w->ne[0]
                                    : t->shape[0] == w->ne[1] && t->shape[1] == w->ne[0]);
    if (!shape_ok) {
        char shape[64] = "[]";
        if (t->ndim >= 1) {
            snprintf(shape, sizeof shape, t->ndim == 1 ? "[%" PRId64 "]" : "[%" PRId64
                     ", %" PRId64 "%s]", t->shape[0], t->ndim > 1 ? t->shape[1] : 0,
                     t->ndim > 2 ? ", ..." : "");
        }
        return mr_error_set(err, MR_ERR_FORMAT,
                            "hf: tensor %s has shape %s, expected [%" PRId64 "%s%" PRId64
                            "] from config.json",
                            hf_name, shape, w->n_dims == 1 ? w->ne[0] : w->ne[1],
                            w->n_dims == 1 ? "" : ", ", w->n_dims == 1 ? (int64_t)0 : w->ne[0]);
    }
    mr_qtype type;
    if (!qtype_of_dtype(t->dtype, &type)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "hf: tensor %s has dtype %s; multiround reads F32, F16 and BF16",
                            hf_name, mr_safetensors_dtype_name(t->dtype));
    }
    int heads = hf_permuted_heads(&model->config, w->name);
    int head_dim = model->config.head_dim;

    if (w->n_dims == 1) {
        float *values = malloc((size_t)w->ne[0] * sizeof *values);
        float *permuted = heads > 0 ? malloc((size_t)w->ne[0] * sizeof *permuted) : NULL;
        if (values == NULL || (heads > 0 && permuted == NULL)) {
            free(values);
            free(permuted);
            return mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory for tensor %s", hf_name);
        }
        mr_status status = mr_safetensors_read_f32(file, hf_name, values, w->ne[0], err);
        if (status != MR_OK) {
            free(values);
            free(permuted);
            return status;
        }
        if (heads > 0) {
            for (int64_t r = 0; r < w->ne[0]; r++) {
                permuted[r] = values[hf_source_row(r, head_dim)];
            }
            free(values);
            values = permuted;
        }
        llama_set_weight_data(model, index, MR_QTYPE_F32, values, true);
        return MR_OK;
    }

    size_t row_bytes = mr_qtype_row_bytes(type, w->ne[0]);
    char *data = malloc(row_bytes * (size_t)w->ne[1]);
    if (data == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory for tensor %s", hf_name);
    }
    const char *source = t->data;
    for (int64_t r = 0; r < w->ne[1]; r++) {
        int64_t from = heads > 0 ? hf_source_row(r, head_dim) : r;
        memcpy(data + (size_t)r * row_bytes, source + (size_t)from * row_bytes, row_bytes);
    }
    llama_set_weight_data(model, index, type, data, true);
    return MR_OK;
}

/* Loads every weight of model from the checkpoint and warns about the
 * tensors left unused. */
static mr_status load_weights(mr_llama *model, hf_checkpoint *ckpt, mr_error *err) {
    for (int i = 0; i < model->weight_count; i++) {
        char hf_name[HF_NAME_MAX];
        if (!hf_tensor_name(model->weights[i].name, hf_name, sizeof hf_name)) {
            return mr_error_set(err, MR_ERR_STATE, "hf: weight %s has no Hugging Face name",
                                model->weights[i].name);
        }
        mr_safetensors *file = NULL;
        bool failed = false;
        const mr_safetensors_tensor *t = checkpoint_find(ckpt, hf_name, &file, &failed, err);
        if (failed) {
            return err->status;
        }
        if (t == NULL) {
            return mr_error_set(err, MR_ERR_NOT_FOUND, "hf: %s has no tensor %s", ckpt->dir,
                                hf_name);
        }
        mr_status status = load_weight(model, i, hf_name, file, t, err);
        if (status != MR_OK) {
            return status;
        }
    }

    int64_t total = checkpoint_tensor_count(ckpt, err);
    if (total < 0) {
        return err->status;
    }
    mr_safetensors *file = NULL;
    bool failed = false;
    if (model->config.tied_output &&
        checkpoint_find(ckpt, "lm_head.weight", &file, &failed, NULL) != NULL) {
        mr_log(MR_LOG_WARN, "hf",
               "%s: ignoring lm_head.weight because config.json ties the output to "
               "model.embed_tokens.weight",
               ckpt->dir);
    }
    if (total > model->weight_count) {
        mr_log(MR_LOG_WARN, "hf", "%s has %" PRId64 " tensors the model does not use",
               ckpt->dir, total - model->weight_count);
    }
    return MR_OK;
}

mr_llama *mr_llama_load_hf(const char *dir, mr_error *err) {
    /* The helpers below read the status back from err. */
    mr_error local;
    if (err == NULL) {
        err = &local;
    }
    char path[HF_PATH_MAX];
    if (mr_path_join(path, sizeof path, dir, "config.json", err) != MR_OK) {
        return NULL;
    }
    if (!is_file(path)) {
        mr_error_set(err, MR_ERR_NOT_FOUND, "hf: %s not found", path);
        return NULL;
    }
    cJSON *json = NULL;
    if (hf_json_read(path, HF_CONFIG_MAX_BYTES, &json, err) != MR_OK) {
        return NULL;
    }
    mr_llama_config config;
    hf_arch arch;
    mr_status status = hf_config_from_json(json, path, &config, &arch, err);
    cJSON_Delete(json);
    if (status != MR_OK) {
        return NULL;
    }

    mr_llama *model = llama_create_layout(&config, err);
    if (model == NULL) {
        return NULL;
    }
    hf_checkpoint ckpt;
    status = checkpoint_open(&ckpt, dir, err);
    if (status == MR_OK) {
        status = load_weights(model, &ckpt, err);
    }
    int files = ckpt.file_count;
    checkpoint_close(&ckpt);
    if (status != MR_OK) {
        mr_llama_free(model);
        return NULL;
    }

    double bytes = 0.0;
    for (int i = 0; i < model->weight_count; i++) {
        const mr_llama_weight *w = &model->weights[i];
        bytes += (double)mr_qtype_row_bytes(w->type, w->ne[0]) * (double)w->ne[1];
    }
    mr_log(MR_LOG_INFO, "hf",
           "loaded '%s': %s, V %d, C %d, L %d, heads %d (kv %d) of D %d, F %d, context %d, "
           "theta %g, eps %g%s; %d weights from %d file%s, %.2f MiB (%s)",
           dir, arch == HF_ARCH_QWEN2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM",
           config.vocab_size, config.dim, config.layers, config.heads, config.kv_heads,
           config.head_dim, config.ffn_dim, config.context_length, (double)config.rope_base,
           (double)config.rms_eps, config.tied_output ? ", tied output" : "",
           model->weight_count, files, files == 1 ? "" : "s", bytes / 1048576.0,
           config.rope_layout == MR_ROPE_ADJACENT ? "q/k rows permuted to adjacent-pair rope"
                                                  : "split-half rope");
    return model;
}

mr_llama *mr_llama_load(const char *path, mr_error *err) {
    return is_directory(path) ? mr_llama_load_hf(path, err) : mr_llama_load_gguf(path, err);
}

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */

/* Adds weight w to the writer under its Hugging Face name, decoded to F32,
 * with permuted rows put back in Hugging Face order. */
static mr_status add_weight(mr_safetensors_writer *writer, const mr_llama *model,
                            const mr_llama_weight *w, mr_qtype type, mr_error *err) {
    char hf_name[HF_NAME_MAX];
    if (!hf_tensor_name(w->name, hf_name, sizeof hf_name)) {
        return mr_error_set(err, MR_ERR_STATE, "hf: weight %s has no Hugging Face name",
                            w->name);
    }
    int64_t rows = w->ne[1], cols = w->ne[0];
    float *values = malloc((size_t)(rows * cols) * sizeof *values);
    if (values == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory for tensor %s", hf_name);
    }

    int heads = hf_permuted_heads(&model->config, w->name);
    int head_dim = model->config.head_dim;
    if (w->n_dims == 1) {
        const float *source = w->data;
        for (int64_t r = 0; r < cols; r++) {
            values[heads > 0 ? hf_source_row(r, head_dim) : r] = source[r];
        }
    } else {
        for (int64_t r = 0; r < rows; r++) {
            int64_t to = heads > 0 ? hf_source_row(r, head_dim) : r;
            llama_weight_row(w, r, values + to * cols);
        }
    }

    int64_t shape[2] = {rows, cols};
    int64_t vector_shape[1] = {cols};
    mr_status status =
        w->n_dims == 1
            ? mr_safetensors_writer_add_f32(writer, hf_name, 1, vector_shape, values,
                                            MR_SAFETENSORS_F32, err)
            : mr_safetensors_writer_add_f32(writer, hf_name, 2, shape, values,
                                            type == MR_QTYPE_F16    ? MR_SAFETENSORS_F16
                                            : type == MR_QTYPE_BF16 ? MR_SAFETENSORS_BF16
                                                                    : MR_SAFETENSORS_F32,
                                            err);
    free(values);
    return status;
}

/* Copies the tokenizer files that exist in source_dir into dir. */
static mr_status copy_tokenizer_files(const char *source_dir, const char *dir, mr_error *err) {
    for (size_t i = 0; i < sizeof tokenizer_files / sizeof tokenizer_files[0]; i++) {
        char from[HF_PATH_MAX], to[HF_PATH_MAX];
        mr_status status = mr_path_join(from, sizeof from, source_dir, tokenizer_files[i], err);
        if (status == MR_OK) {
            status = mr_path_join(to, sizeof to, dir, tokenizer_files[i], err);
        }
        if (status != MR_OK) {
            return status;
        }
        if (!is_file(from)) {
            continue;
        }
        void *bytes = NULL;
        size_t size = 0;
        status = mr_file_read_all(from, HF_TOKENIZER_MAX_BYTES, &bytes, &size, err);
        if (status == MR_OK) {
            status = mr_file_write_atomic(to, bytes, size, err);
        }
        free(bytes);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Writes the key/values of metadata to dir/tokenizer.gguf, without
 * tensors. */
static mr_status write_tokenizer_gguf(const mr_gguf *metadata, const char *dir, mr_error *err) {
    char path[HF_PATH_MAX];
    mr_status status = mr_path_join(path, sizeof path, dir, "tokenizer.gguf", err);
    if (status != MR_OK) {
        return status;
    }
    mr_gguf_writer *writer = mr_gguf_writer_create();
    if (writer == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory to write %s", path);
    }
    status = mr_gguf_writer_copy_kv(writer, metadata, err);
    if (status == MR_OK) {
        status = mr_gguf_writer_write(writer, path, err);
    }
    mr_gguf_writer_free(writer);
    return status;
}

mr_status mr_llama_save_hf(const mr_llama *model, const char *dir, mr_qtype type,
                           const char *source_dir, const mr_gguf *metadata, mr_error *err) {
    if (type != MR_QTYPE_F32 && type != MR_QTYPE_F16 && type != MR_QTYPE_BF16) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "hf: safetensors stores F32, F16 or BF16, not %s; write a GGUF file "
                            "for quantised weights",
                            mr_qtype_name(type) != NULL ? mr_qtype_name(type) : "this type");
    }
    mr_status status = mr_make_dirs(dir, err);
    if (status != MR_OK) {
        return status;
    }

    /* model.safetensors */
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    if (writer == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory to write %s", dir);
    }
    status = mr_safetensors_writer_add_metadata(writer, "format", "pt", err);
    for (int i = 0; status == MR_OK && i < model->weight_count; i++) {
        status = add_weight(writer, model, &model->weights[i], type, err);
    }
    char path[HF_PATH_MAX];
    if (status == MR_OK) {
        status = mr_path_join(path, sizeof path, dir, "model.safetensors", err);
    }
    if (status == MR_OK) {
        status = mr_safetensors_writer_write(writer, path, err);
    }
    mr_safetensors_writer_free(writer);

    /* config.json */
    if (status == MR_OK) {
        status = mr_path_join(path, sizeof path, dir, "config.json", err);
    }
    if (status == MR_OK) {
        cJSON *json = hf_config_to_json(&model->config, hf_arch_of(&model->config), type);
        status = json != NULL ? hf_json_write(path, json, err)
                              : mr_error_set(err, MR_ERR_NO_MEMORY, "hf: no memory for %s",
                                             path);
        cJSON_Delete(json);
    }

    /* Tokenizer files. */
    if (status == MR_OK && source_dir != NULL && strcmp(source_dir, dir) != 0) {
        status = copy_tokenizer_files(source_dir, dir, err);
    }
    if (status == MR_OK && metadata != NULL) {
        status = write_tokenizer_gguf(metadata, dir, err);
    }
    if (status == MR_OK) {
        /* Only matrices take type; 1-D weights are written as F32. */
        int matrices = 0;
        for (int i = 0; i < model->weight_count; i++) {
            matrices += model->weights[i].n_dims == 2;
        }
        int vectors = model->weight_count - matrices;
        if (type == MR_QTYPE_F32) {
            matrices += vectors;
            vectors = 0;
        }
        char counts[64];
        if (vectors > 0) {
            snprintf(counts, sizeof counts, "%d %s, %d f32", matrices, mr_qtype_name(type),
                     vectors);
        } else {
            snprintf(counts, sizeof counts, "%d %s", matrices, mr_qtype_name(type));
        }
        mr_log(MR_LOG_INFO, "hf", "wrote '%s': %s, %d tensors (%s)", dir,
               hf_arch_of(&model->config) == HF_ARCH_QWEN2 ? "Qwen2ForCausalLM"
                                                           : "LlamaForCausalLM",
               model->weight_count, counts);
    }
    return status;
}

/* ------------------------------------------------------------------------
 * Conversion
 * ------------------------------------------------------------------------ */

static bool ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* Converts input to output as mr_llama_convert() describes, after
 * merging the PEFT LoRA folder lora_dir into the weights when it is not
 * NULL. */
static mr_status convert_model(const char *input, const char *lora_dir, const char *output,
                               const mr_qtype *type, mr_error *err) {
    mr_error local;
    if (err == NULL) {
        err = &local;
    }
    bool from_folder = is_directory(input);
    bool to_gguf = ends_with(output, ".gguf");
    mr_llama *model = mr_llama_load(input, err);
    if (model == NULL) {
        return err->status;
    }

    /* The default type is read before the merge, which turns the
     * targeted matrices into F32 (the embedding is never a target). */
    mr_qtype embedding_type = model->weights[model->token_embd].type;
    if (lora_dir != NULL) {
        mr_status merged = mr_lora_merge_peft(model, lora_dir, err);
        if (merged != MR_OK) {
            mr_llama_free(model);
            return merged;
        }
    }

    /* The key/values to carry over: the GGUF input itself, or the
     * tokenizer.gguf of a folder when the output is a GGUF file. */
    mr_gguf *metadata = NULL;
    mr_status status = MR_OK;
    if (!from_folder) {
        status = mr_gguf_open(input, &metadata, err);
    } else if (to_gguf) {
        char path[HF_PATH_MAX];
        status = mr_path_join(path, sizeof path, input, "tokenizer.gguf", err);
        if (status == MR_OK && is_file(path)) {
            status = mr_gguf_open(path, &metadata, err);
        }
    }

    mr_qtype target = type != NULL ? *type : embedding_type;
    if (type == NULL && !to_gguf && target != MR_QTYPE_F16 && target != MR_QTYPE_BF16) {
        target = MR_QTYPE_F32;
    }
    if (status == MR_OK && to_gguf) {
        status = mr_llama_save_gguf(model, output, target, metadata, err);
    } else if (status == MR_OK) {
        status = mr_llama_save_hf(model, output, target, from_folder ? input : NULL, metadata,
                                  err);
    }
    mr_gguf_close(metadata);
    mr_llama_free(model);
    return status;
}

mr_status mr_llama_convert(const char *input, const char *output, const mr_qtype *type,
                           mr_error *err) {
    return convert_model(input, NULL, output, type, err);
}

mr_status mr_lora_merge_file(const char *model_path, const char *lora_dir, const char *output,
                             const mr_qtype *type, mr_error *err) {
    return convert_model(model_path, lora_dir, output, type, err);
}

int64_t mr_llama_param_count(const mr_llama *model) {
    int64_t total = 0;
    for (int i = 0; i < model->weight_count; i++) {
        total += model->weights[i].ne[0] * model->weights[i].ne[1];
    }
    return total;
}
