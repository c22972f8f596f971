/* core/acme/http01.h — the http-01 challenge table and handler: declared in paf/acme.h. */
#pragma once

#include <paf/acme.h>
