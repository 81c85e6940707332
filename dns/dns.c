/*
 * dns.c - resolver set-up (dns_server = HOST:PORT or the system resolver),
 * names, and the provider-mode name mapping.
 */
#include "dns/dns_int.h"

#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DEFAULT_TIMEOUT_MS 3000
#define EDNS_UDP_SIZE 1232 /* the DNS flag day 2020 size: no IP fragmentation */

const char *dn_status_name(enum dn_status s)
{
    switch (s) {
    case DN_OK:
        return "ok";
    case DN_MISSING:
        return "missing";
    case DN_MISMATCH:
        return "mismatch";
    case DN_REVOKED:
        return "revoked";
    }
    return "unknown";
}

const char *dn_rcode_name(int rcode, char buf[16])
{
    ldns_lookup_table *t = ldns_lookup_by_id(ldns_rcodes, rcode);
    if (t != NULL && t->name != NULL)
        return t->name;
    snprintf(buf, 16, "RCODE %d", rcode);
    return buf;
}

int dn_name_norm(const char *in, char *out, size_t outsz)
{
    size_t n = strlen(in);
    if (n > 0 && in[n - 1] == '.')
        n--;
    if (n == 0 || n >= outsz || n > 253)
        return DH_EINVAL;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[n] = '\0';
    return DH_OK;
}

int dn_rdf_name(const ldns_rdf *rdf, char *out, size_t outsz)
{
    char *s = ldns_rdf2str(rdf);
    if (s == NULL)
        return DH_ENOMEM;
    int rc = dn_name_norm(s, out, outsz);
    free(s);
    return rc;
}

int dn_delegated_name(const char *domain, const char *selector, const char *zone, dh_buf *out)
{
    char d[256], s[256], z[256];
    if (dn_name_norm(domain, d, sizeof(d)) != DH_OK ||
        dn_name_norm(selector, s, sizeof(s)) != DH_OK || dn_name_norm(zone, z, sizeof(z)) != DH_OK)
        return DH_EINVAL;
    /* The selector and domain become one label of the provider's zone. */
    if (strlen(s) + 1 + strlen(d) > 63)
        return DH_EINVAL;
    for (char *p = d; *p != '\0'; p++)
        if (*p == '.')
            *p = '-';
    if (strchr(s, '.') != NULL)
        return DH_EINVAL; /* a dotted selector would not be one label */
    if (strlen(s) + 1 + strlen(d) + strlen("._domainkey.") + strlen(z) > 253)
        return DH_EINVAL;
    return dh_buf_printf(out, "%s-%s._domainkey.%s", s, d, z);
}

/* "HOST:PORT", "HOST", "[V6]:PORT", "V6" -> host and port. */
static int split_server(const char *server, char *host, size_t hostsz, unsigned *port)
{
    const char *colon = strrchr(server, ':');
    const char *h = server;
    size_t hlen = strlen(server);
    *port = 53;
    if (server[0] == '[') {
        const char *close = strchr(server, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return DH_EINVAL;
        h = server + 1;
        hlen = (size_t)(close - h);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else if (colon != NULL && strchr(server, ':') != colon) {
        colon = NULL; /* a bare IPv6 address */
    } else if (colon != NULL) {
        hlen = (size_t)(colon - server);
    }
    if (colon != NULL) {
        char *end;
        unsigned long p = strtoul(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || p == 0 || p > 65535)
            return DH_EINVAL;
        *port = (unsigned)p;
    }
    if (hlen == 0 || hlen >= hostsz)
        return DH_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return DH_OK;
}

/* Every address of host (numeric or a name the system resolves). */
static int push_addresses(ldns_resolver *r, const char *host, const char *server, dh_err *e)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
    int g = getaddrinfo(host, NULL, &hints, &ai);
    if (g != 0)
        return dh_err_set(e, DH_EIO, "DNS server %s: %s", server, gai_strerror(g));
    int pushed = 0;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        char ip[64];
        if (getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0)
            continue;
        ldns_rdf *rdf = ldns_rdf_new_frm_str(
            a->ai_family == AF_INET6 ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A, ip);
        if (rdf != NULL && ldns_resolver_push_nameserver(r, rdf) == LDNS_STATUS_OK)
            pushed++;
        ldns_rdf_deep_free(rdf);
    }
    freeaddrinfo(ai);
    if (pushed == 0)
        return dh_err_set(e, DH_EIO, "DNS server %s: no usable address", server);
    return DH_OK;
}

static int open_server(const char *server, ldns_resolver **out, dh_err *e)
{
    char host[256];
    unsigned port;
    if (split_server(server, host, sizeof(host), &port) != DH_OK)
        return dh_err_set(e, DH_EINVAL,
                          "DNS server \"%s\": expected HOST, HOST:PORT or [IPV6]:PORT", server);
    ldns_resolver *r = ldns_resolver_new();
    if (r == NULL)
        return dh_err_set(e, DH_ENOMEM, "out of memory");
    int rc = push_addresses(r, host, server, e);
    if (rc != DH_OK) {
        ldns_resolver_deep_free(r);
        return rc;
    }
    ldns_resolver_set_port(r, (uint16_t)port);
    *out = r;
    return DH_OK;
}

int dn_res_open(const dn_config *c, int need_server, dn_res *out, dh_err *e)
{
    memset(out, 0, sizeof(*out));
    ldns_resolver *r = NULL;
    int rc = DH_OK;
    if (c != NULL && c->server != NULL) {
        rc = open_server(c->server, &r, e);
        snprintf(out->what, sizeof(out->what), "DNS server %s", c->server);
    } else if (need_server) {
        return dh_err_set(e, DH_EINVAL, "no DNS server given for the update");
    } else {
        ldns_status st = ldns_resolver_new_frm_file(&r, NULL);
        if (st != LDNS_STATUS_OK)
            rc = dh_err_set(e, DH_EIO, "system resolver (/etc/resolv.conf): %s",
                            ldns_get_errorstr_by_id(st));
        snprintf(out->what, sizeof(out->what), "the system resolver");
    }
    if (rc != DH_OK)
        return rc;
    unsigned ms = c != NULL && c->timeout_ms != 0 ? c->timeout_ms : DEFAULT_TIMEOUT_MS;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    ldns_resolver_set_timeout(r, tv);
    ldns_resolver_set_retry(r, 1);
    ldns_resolver_set_retrans(r, 0);
    ldns_resolver_set_random(r, false);
    ldns_resolver_set_defnames(r, false);
    ldns_resolver_set_dnsrch(r, false);
    ldns_resolver_set_dnssec(r, false);
    ldns_resolver_set_fallback(r, true);
    ldns_resolver_set_recursive(r, true);
    ldns_resolver_set_edns_udp_size(r, EDNS_UDP_SIZE);
    out->r = r;
    out->timeout_ms = ms;
    return DH_OK;
}

void dn_res_close(dn_res *r)
{
    if (r == NULL)
        return;
    ldns_resolver_deep_free(r->r);
    r->r = NULL;
}
