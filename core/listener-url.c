/* core/listener-url.c — the URL a listener is reached by, from the schemes its plugins registered.
 */
#include <stdio.h>

#include "paf-internal.h"

/* The schemes a transport protocol serves plainly: a whole "http" or
 * "http+X" (*ret_whole), else a suffix "+X" (*ret_suffix). */
static void find_plain(paf_registry *reg, const char *transport, const paf_scheme **ret_whole,
                       const paf_scheme **ret_suffix) {
        *ret_whole = *ret_suffix = NULL;
        for (size_t i = 0; i < paf_registry_get_n_schemes(reg); i++) {
                const paf_scheme *s = paf_registry_get_scheme(reg, i);
                const char *name = paf_scheme_get_name(s);
                if ((paf_scheme_get_flags(s) & PAF_SCHEME_LAYER) ||
                    strcmp(paf_scheme_get_protocol(s), transport) != 0)
                        continue;
                if (!*ret_whole && (strcmp(name, "http") == 0 || strncmp(name, "http+", 5) == 0))
                        *ret_whole = s;
                else if (!*ret_suffix && name[0] == '+')
                        *ret_suffix = s;
        }
}

static const paf_scheme *find_layer(paf_registry *reg, const char *layer) {
        for (size_t i = 0; i < paf_registry_get_n_schemes(reg); i++) {
                const paf_scheme *s = paf_registry_get_scheme(reg, i);
                if ((paf_scheme_get_flags(s) & PAF_SCHEME_LAYER) &&
                    strcmp(paf_scheme_get_protocol(s), layer) == 0)
                        return s;
        }
        return NULL;
}

/* A whole scheme named name that transport registered itself ("https" of
 * tcp, "https+vsock"): it says the port and host rules of that name. */
static const paf_scheme *find_whole(paf_registry *reg, const char *transport, const char *name) {
        for (size_t i = 0; i < paf_registry_get_n_schemes(reg); i++) {
                const paf_scheme *s = paf_registry_get_scheme(reg, i);
                if (!(paf_scheme_get_flags(s) & PAF_SCHEME_LAYER) &&
                    strcmp(paf_scheme_get_protocol(s), transport) == 0 &&
                    strcmp(paf_scheme_get_name(s), name) == 0)
                        return s;
        }
        return NULL;
}

static bool is_unreserved(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * The URL's authority from the listener's address. A host-name transport's
 * address is one already ("127.0.0.1:8080", "[::1]:80"). Any other's is
 * what its URL rule reads back from the host: the address without its
 * "PROTOCOL:" prefix ("vsock:3:80", "loop:x"), percent-encoded
 * ("%2Frun%2Fpaf.sock"), but for a ":PORT" at the end when the scheme has
 * ports.
 */
static int format_authority(const char *address, const char *transport, bool hostname,
                            bool has_port, FILE *f) {
        if (hostname)
                return fputs(address, f) < 0 ? -ENOMEM : 0;
        size_t n = strlen(transport);
        if (strncmp(address, transport, n) == 0 && address[n] == ':')
                address += n + 1;
        const char *port = NULL;
        if (has_port) {
                port = strrchr(address, ':');
                if (port && (port[1] == '\0' || strspn(port + 1, "0123456789") != strlen(port + 1)))
                        port = NULL;
        }
        for (const char *c = address; *c && c != port; c++)
                if (is_unreserved(*c) ? fputc(*c, f) < 0
                                      : fprintf(f, "%%%02X", (unsigned char)*c) < 0)
                        return -ENOMEM;
        if (port && fputs(port, f) < 0)
                return -ENOMEM;
        return 0;
}

PAF_EXPORT int paf_listener_format_url(paf_listener *l, char **ret) {
        if (!l || !ret)
                return -EINVAL;
        paf_registry *reg = paf_listener_get_registry(l);
        const char *protocol = paf_listener_get_protocol(l);
        const char *transport = paf_listener_get_transport(l);
        const char *address = paf_listener_get_address(l);
        if (!reg || !protocol || !transport || !address)
                return -ENOENT;
        bool layered = strcmp(protocol, transport) != 0;

        const paf_scheme *whole, *suffix;
        find_plain(reg, transport, &whole, &suffix);
        if (!whole && !suffix)
                return -ENOENT;
        /* What follows the base: "" for "http", "+unix" for "http+unix" or "+unix". */
        const char *rest =
                whole ? paf_scheme_get_name(whole) + strlen("http") : paf_scheme_get_name(suffix);
        const paf_scheme *used = whole ? whole : suffix;

        char scheme[160];
        if (layered) {
                const paf_scheme *layer = find_layer(reg, protocol);
                if (!layer)
                        return -ENOENT;
                snprintf(scheme, sizeof(scheme), "%s%s", paf_scheme_get_name(layer), rest);
                /* tcp's own "https" (port 443), vsock's "https+vsock". */
                const paf_scheme *own = find_whole(reg, transport, scheme);
                if (own)
                        used = own;
        } else
                snprintf(scheme, sizeof(scheme), "http%s", rest);

        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        int r = fprintf(f, "%s://", scheme) < 0 ? -ENOMEM : 0;
        if (r >= 0)
                r = format_authority(address, transport,
                                     paf_scheme_get_flags(used) & PAF_SCHEME_HOSTNAME,
                                     paf_scheme_get_default_port(used) > 0, f);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}
