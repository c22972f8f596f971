/* paf.h — HTTP over pluggable transports: every public header. */
#pragma once

#include <paf/acme.h>
#include <paf/client.h>
#include <paf/common.h>
#include <paf/ctx.h>
#include <paf/error.h>
#include <paf/event.h>
#include <paf/flow.h>
#include <paf/http.h>
#include <paf/plugin.h>
#include <paf/protocol.h>
#include <paf/registry.h>
#include <paf/resolver.h>
#include <paf/static.h>
#include <paf/systemd.h>
