/* core/acme/tlsalpn.h — tls-alpn-01 certificates and table: declared in paf/acme.h. */
#pragma once

#include <paf/acme.h>
