/*
 * mcs_plugin.h — the C ABI between mcsd and CA adapter plugins. ABI version 1.
 *
 * A plugin is a shared library exporting:
 *   uint32_t mcs_plugin_abi_version(void);          // must return MCS_PLUGIN_ABI_VERSION
 *   const mcs_plugin *mcs_plugin_entry(const mcs_host *host, mcs_bytes config_json,
 *                                      mcs_sink err, void *err_ctx);
 * The entry returns NULL (after writing a message to err) if it cannot start.
 *
 * No allocation crosses the boundary: a producer hands bytes to the consumer's sink, which
 * copies them before returning. Requests and answers are UTF-8 JSON.
 *
 * Operations for mcs_plugin.call (request → answer):
 *   "describe" {}                        → {name, version, algorithms:[..], profiles:[..]}
 *   "issue"    {csr (base64 DER), profile, subject:{kind,name,org_name?,credit_code?,id_number?},
 *               validity_days}            → {certificate (base64 DER), chain:[base64 DER], serial (hex)}
 *   "revoke"   {serial (hex), reason}     → {}
 *   "status"   {serial (hex)}             → {status: "good"|"revoked"|"unknown", reason?}
 *   "crl"      {}                         → {crl (base64 DER)}      (MCS_PLUGIN_UNSUPPORTED if none)
 *
 * Every export must catch its own failures: never unwind or longjmp across the boundary.
 * The host calls plugin functions from worker threads, possibly concurrently, with a
 * per-call timeout; it never unloads a library.
 */
#ifndef MCS_PLUGIN_H
#define MCS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define MCS_PLUGIN_ABI_VERSION 1u

#define MCS_PLUGIN_OK 0
#define MCS_PLUGIN_ERROR 1        /* message written to the sink */
#define MCS_PLUGIN_UNSUPPORTED 2

typedef struct {
    const uint8_t *ptr;
    size_t len;
} mcs_bytes;

typedef void (*mcs_sink)(void *ctx, const uint8_t *ptr, size_t len);

typedef struct {
    uint32_t abi_version;
    void *ctx;
    /* Sign tbs with the daemon-held SM2 key `key` (SM2 with SM3, ID 1234567812345678);
     * DER SEQUENCE{r, s} to out. */
    int32_t (*sign)(void *ctx, mcs_bytes key, mcs_bytes tbs, mcs_sink out, void *out_ctx);
    /* DER SubjectPublicKeyInfo of the daemon-held key `key`, created on first use. */
    int32_t (*public_key)(void *ctx, mcs_bytes key, mcs_sink out, void *out_ctx);
    /* Log a UTF-8 line; level 1 error … 4 debug. */
    void (*log)(void *ctx, uint32_t level, mcs_bytes msg);
} mcs_host;

typedef struct {
    uint32_t abi_version;
    void *state;
    int32_t (*call)(void *state, mcs_bytes op, mcs_bytes request_json, mcs_sink out, void *out_ctx);
    void (*destroy)(void *state);
} mcs_plugin;

uint32_t mcs_plugin_abi_version(void);
const mcs_plugin *mcs_plugin_entry(const mcs_host *host, mcs_bytes config_json, mcs_sink err, void *err_ctx);

#endif /* MCS_PLUGIN_H */
