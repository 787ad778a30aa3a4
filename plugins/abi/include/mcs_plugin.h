/*
 * mcs_plugin.h — the C ABI between mcsd and CA adapter plugins. ABI version 2.
 *
 * A plugin is a shared library exporting:
 *   uint32_t mcs_plugin_abi_version(void);          // the ABI it was built for
 *                                                   // (MCS_PLUGIN_ABI_VERSION)
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
 *   "hold"     {serial (hex)}             → {}   optional (MCS_PLUGIN_UNSUPPORTED if none):
 *                                               certificate hold, CRL reason certificateHold
 *   "release"  {serial (hex)}             → {}   optional: the hold lifted
 *   "crl"      {}                         → {crl (base64 DER)}      (MCS_PLUGIN_UNSUPPORTED if none)
 *
 * Versions: the daemon loads adapters built for MCS_PLUGIN_MIN_ABI_VERSION (1) up to
 * MCS_PLUGIN_ABI_VERSION (2) and refuses any other by its version, before calling the entry.
 * ABI 2 only appended the key-value calls (kv_get, kv_put, kv_cas) to the end of mcs_host;
 * the fields of ABI 1 are unchanged, so an adapter built for ABI 1 works as before. An
 * adapter built for ABI 2 may use the key-value calls only when host->abi_version >= 2
 * (a daemon of ABI 1 refuses such an adapter anyway).
 *
 * Key-value state: an adapter that keeps state (a serial index, a CRL) keeps it in the
 * daemon's store, not in files, so that every node of a cluster on one database sees the
 * same state. Each adapter has its own namespace (the host picks it: the adapter's
 * configured name) and cannot reach another's. Keys are at most MCS_PLUGIN_KV_MAX_KEY
 * bytes, values at most MCS_PLUGIN_KV_MAX_VALUE (1 MiB); a put or a swap is durable when
 * the call returns. Several nodes may run the same adapter at once: update a value with a
 * loop of kv_get and kv_cas, never with kv_get then kv_put. The calls block (they reach
 * the store, and wait for the disk or the database).
 *
 * Every export must catch its own failures: never unwind or longjmp across the boundary.
 * The host calls plugin functions from worker threads, possibly concurrently, with a
 * per-call timeout; it never unloads a library.
 */
#ifndef MCS_PLUGIN_H
#define MCS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define MCS_PLUGIN_ABI_VERSION 2u
#define MCS_PLUGIN_MIN_ABI_VERSION 1u /* the oldest adapter ABI the daemon loads */
#define MCS_PLUGIN_KV_ABI_VERSION 2u  /* host->abi_version from which kv_* exist */

#define MCS_PLUGIN_KV_MAX_KEY 1024u
#define MCS_PLUGIN_KV_MAX_VALUE (1u << 20)

#define MCS_PLUGIN_OK 0
#define MCS_PLUGIN_ERROR 1        /* message written to the sink */
#define MCS_PLUGIN_UNSUPPORTED 2
#define MCS_PLUGIN_ABSENT 3       /* kv_get: no value under the key; nothing written */
#define MCS_PLUGIN_CONFLICT 4     /* kv_cas: the stored value was another; nothing written */

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

    /* ---- ABI 2: present only when abi_version >= MCS_PLUGIN_KV_ABI_VERSION ---- */
    /* The value under `key` in this adapter's namespace to out: MCS_PLUGIN_OK, or
     * MCS_PLUGIN_ABSENT (nothing written); MCS_PLUGIN_ERROR with a message in out. */
    int32_t (*kv_get)(void *ctx, mcs_bytes key, mcs_sink out, void *out_ctx);
    /* Store value under key, durably: MCS_PLUGIN_OK, or MCS_PLUGIN_ERROR with a message in err. */
    int32_t (*kv_put)(void *ctx, mcs_bytes key, mcs_bytes value, mcs_sink err, void *err_ctx);
    /* Compare-and-swap, durably: store value under key if the stored value equals *expected,
     * or if there is none when expected is NULL. MCS_PLUGIN_OK: swapped; MCS_PLUGIN_CONFLICT:
     * the stored value was another (read it again, retry); MCS_PLUGIN_ERROR with a message
     * in err. Linearizable per key across every node sharing the store. */
    int32_t (*kv_cas)(void *ctx, mcs_bytes key, const mcs_bytes *expected, mcs_bytes value,
                      mcs_sink err, void *err_ctx);
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
