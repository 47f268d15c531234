#include "hyperd/config_schema.h"

#include <nlohmann/json.hpp>

namespace hyper::controller {

// The single source of the config file's schema (see config_schema.h for why it is not in
// schemas/). Each "description" is what the error message says was expected, so it is written
// for the person who got the field wrong. Enumerations carry no "type" of their own, so that a
// value of the wrong type gets one error, not two. Checks a schema cannot express well are done in
// config.cc after validation: durations that parse but are zero or overflow, a listen address that
// is not loopback, the fields each alert type allows, and the secret files themselves.
// Long: the schema's JSON text, one property per config field.
std::string_view hyperdConfigSchema() {
  return R"json({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "hyperd configuration (schemaVersion 1)",
  "type": "object",
  "additionalProperties": false,
  "required": ["schemaVersion", "source"],
  "definitions": {
    "duration": {
      "type": "string",
      "maxLength": 32,
      "pattern": "^[0-9]+(ms|s|m|h)$",
      "description": "a duration with a unit: 500ms, 30s, 2m or 1h"
    },
    "file": {
      "type": "string",
      "minLength": 1,
      "description": "the path of a file readable only by its owner (mode 0600 or 0400)"
    }
  },
  "properties": {
    "schemaVersion": {
      "enum": ["1"],
      "description": "\"1\", quoted: the only config format this hyperd reads"
    },
    "source": {
      "type": "object",
      "additionalProperties": false,
      "required": ["url"],
      "description": "a mapping with url and optionally ref, path, interval, timeout, caFile, sshKeyFile, knownHostsFile, credentialsFile and poll",
      "properties": {
        "url": {
          "type": "string",
          "minLength": 1,
          "description": "a directory, the path of a git repository, or a git URL (file://, http(s)://, ssh://)"
        },
        "ref": {
          "type": "string",
          "minLength": 1,
          "description": "a branch, a tag or a commit id (default main)"
        },
        "path": {
          "type": "string",
          "description": "a sub-path within the source (default: its root)"
        },
        "interval": {"$ref": "#/definitions/duration"},
        "timeout": {"$ref": "#/definitions/duration"},
        "caFile": {
          "type": "string",
          "minLength": 1,
          "description": "a PEM file of CA certificates to trust for https, besides the system's"
        },
        "sshKeyFile": {
          "type": "string",
          "minLength": 1,
          "description": "the private key for ssh, readable only by its owner (mode 0600 or 0400); KEY.pub beside it is used when present"
        },
        "knownHostsFile": {
          "type": "string",
          "minLength": 1,
          "description": "an OpenSSH known_hosts file listing the ssh server's host key (ssh URLs need it)"
        },
        "credentialsFile": {
          "type": "string",
          "minLength": 1,
          "description": "for http(s): a file holding one line user:token, readable only by its owner (mode 0600 or 0400); used instead of credentials in the url"
        },
        "poll": {
          "type": "boolean",
          "description": "for a directory: true to read it every interval instead of watching it with inotify (a network filesystem's remote changes make no inotify event); default false"
        }
      }
    },
    "driftInterval": {"$ref": "#/definitions/duration"},
    "driftPolicy": {
      "enum": ["correct", "alert"],
      "description": "correct or alert: what to do about drift when an object does not say (default correct)"
    },
    "prune": {
      "type": "boolean",
      "description": "true or false: delete managed objects that left the source (default true)"
    },
    "hold": {
      "type": "object",
      "additionalProperties": false,
      "description": "a mapping with deleteAll, maxDeletedPercent and maxDeletedRunningVmsPercent: when a revision is held until approved",
      "properties": {
        "deleteAll": {
          "type": "boolean",
          "description": "true or false: hold a revision that deletes every managed object (default true)"
        },
        "maxDeletedPercent": {
          "type": "integer",
          "minimum": 0,
          "maximum": 100,
          "description": "an integer from 0 to 100: hold a revision that deletes more than this share of the managed objects (default 100: never)"
        },
        "maxDeletedRunningVmsPercent": {
          "type": "integer",
          "minimum": 0,
          "maximum": 100,
          "description": "an integer from 0 to 100: hold a revision that deletes more than this share of the running VMs (default 50)"
        }
      }
    },
    "gc": {
      "type": "object",
      "additionalProperties": false,
      "description": "a mapping with interval and keepRevisions: when hyperd removes store artifacts nothing uses",
      "properties": {
        "interval": {"$ref": "#/definitions/duration"},
        "keepRevisions": {
          "type": "integer",
          "minimum": 0,
          "maximum": 10000,
          "description": "an integer from 0 to 10000: keep what the last N applied revisions used (default 10)"
        }
      }
    },
    "parallelism": {
      "type": "integer",
      "minimum": 1,
      "maximum": 64,
      "description": "an integer from 1 to 64: actions run at once (default 4)"
    },
    "providers": {
      "type": "object",
      "description": "a mapping of provider settings, by provider (filled in from the kind registry)"
    },
    "stateDir": {
      "type": "string",
      "minLength": 1,
      "description": "a directory for hyperd's database, clones and token (default /var/lib/hyper)"
    },
    "listen": {
      "type": "string",
      "maxLength": 300,
      "pattern": "^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$",
      "description": "HOST:PORT for the API on loopback, e.g. 127.0.0.1:7400 (default)"
    },
    "allowNonLoopback": {
      "type": "boolean",
      "description": "true to let listen name a non-loopback address (default false)"
    },
    "webhook": {
      "type": "object",
      "additionalProperties": false,
      "description": "a mapping with githubSecretFile and/or gitlabTokenFile",
      "properties": {
        "githubSecretFile": {"$ref": "#/definitions/file"},
        "gitlabTokenFile": {"$ref": "#/definitions/file"}
      }
    },
    "alerts": {
      "type": "array",
      "description": "a list of alert sinks: {type: log} or {type: webhook, url, secretFile, maxAttempts}",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["type"],
        "description": "an alert sink: {type: log} or {type: webhook, url, secretFile, maxAttempts}",
        "properties": {
          "type": {
            "enum": ["log", "webhook"],
            "description": "log or webhook"
          },
          "url": {
            "type": "string",
            "maxLength": 4096,
            "pattern": "^https?://[^/?#@\\s]+([/?#]\\S*)?$",
            "description": "an http:// or https:// URL without user information"
          },
          "secretFile": {"$ref": "#/definitions/file"},
          "maxAttempts": {
            "type": "integer",
            "minimum": 1,
            "maximum": 20,
            "description": "an integer from 1 to 20: delivery attempts per alert (default 5)"
          }
        }
      }
    },
    "debounce": {"$ref": "#/definitions/duration"}
  }
})json";
}

std::string hyperdConfigSchema(const KindRegistry& kinds) {
  nlohmann::json schema = nlohmann::json::parse(hyperdConfigSchema());
  schema["properties"]["providers"] = kinds.settingsSchema();
  return schema.dump();
}

}  // namespace hyper::controller
