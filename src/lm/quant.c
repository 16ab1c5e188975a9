/*
 * Storage types of language-model weights: conversion, dot products and
 * matrix-vector products. See include/multiround/quant.h for the layouts.
 */
#include "multiround/quant.h"

/* TODO: stub until the kernels land; every function reports an unknown type. */
const char *mr_qtype_name(mr_qtype type) { (void)type; return NULL; }
bool mr_qtype_parse(const char *name, mr_qtype *out) { (void)name; (void)out; return false; }
bool mr_qtype_known(int value) { (void)value; return false; }
int mr_qtype_block_size(mr_qtype type) { (void)type; return 0; }
size_t mr_qtype_block_bytes(mr_qtype type) { (void)type; return 0; }
size_t mr_qtype_row_bytes(mr_qtype type, int64_t n) { (void)type; (void)n; return 0; }
void mr_dequantize_row(mr_qtype type, const void *src, float *dst, int64_t n) {
    (void)type; (void)src; (void)dst; (void)n;
}
void mr_quantize_row(mr_qtype type, const float *src, void *dst, int64_t n) {
    (void)type; (void)src; (void)dst; (void)n;
}
float mr_qdot(mr_qtype type, const void *row, const float *x, int64_t n) {
    (void)type; (void)row; (void)x; (void)n;
    return 0.0f;
}
void mr_qmatvec(mr_qtype type, const void *w, int64_t rows, int64_t n, const float *x, float *y) {
    (void)type; (void)w; (void)rows; (void)n; (void)x; (void)y;
}
