/*
 * Backbone names and the table from backbone type to its operations.
 */
#include <string.h>
#include <strings.h>

#include "backbone.h"

static const char *const backbone_names[MR_REC_BACKBONES] = {
    "gru4rec", "sasrec", "nextitnet", "srgnn", "fmlprec"};

const char *mr_rec_backbone_name(mr_rec_backbone_type type) {
    if ((int)type < 0 || (int)type >= MR_REC_BACKBONES) {
        return "unknown";
    }
    return backbone_names[type];
}

mr_status mr_rec_backbone_parse(const char *name, mr_rec_backbone_type *type,
                                mr_error *err) {
    /* Accept the papers' spellings with a hyphen too. */
    char plain[32];
    size_t length = 0;
    for (const char *c = name; *c != '\0' && length + 1 < sizeof plain; c++) {
        if (*c != '-' && *c != '_') {
            plain[length++] = *c;
        }
    }
    plain[length] = '\0';

    for (int i = 0; i < MR_REC_BACKBONES; i++) {
        if (strcasecmp(plain, backbone_names[i]) == 0) {
            *type = (mr_rec_backbone_type)i;
            return MR_OK;
        }
    }
    return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                        "rec: unknown backbone '%s'; choose gru4rec, sasrec, nextitnet, "
                        "srgnn or fmlprec",
                        name);
}

const mr_rec_backbone_ops *mr_rec_backbone_ops_for(mr_rec_backbone_type type) {
    switch (type) {
    case MR_REC_GRU4REC: return &mr_rec_gru4rec_ops;
    case MR_REC_SASREC: return &mr_rec_sasrec_ops;
    case MR_REC_NEXTITNET: return &mr_rec_nextitnet_ops;
    case MR_REC_SRGNN: return &mr_rec_srgnn_ops;
    case MR_REC_FMLPREC: return &mr_rec_fmlprec_ops;
    }
    return NULL;
}
