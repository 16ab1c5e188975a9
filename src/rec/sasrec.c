/*
 * The sasrec backbone. Placeholder until its implementation lands: declaring
 * it fails with a clear error.
 */
#include "backbone.h"

static void *sasrec_declare(const mr_rec_config *config, mr_paramset *ps,
                          mr_error *err) {
    (void)config;
    (void)ps;
    mr_error_set(err, MR_ERR_UNSUPPORTED, "rec: the sasrec backbone is not available in this build");
    return NULL;
}

const mr_rec_backbone_ops mr_rec_sasrec_ops = {sasrec_declare, NULL, NULL, NULL};
