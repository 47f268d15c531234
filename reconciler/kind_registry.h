#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "reconciler/file_sources.h"
#include "reconciler/managed_record.h"
#include "reconciler/provider.h"
#include "reconciler/schema.h"
#include "reconciler/secret_fields.h"

namespace hyper {

// The kind registry: everything hyper knows of a kind, in one record per provider, listed in one
// place (providers/builtin.cc). hyperctl's `get` tables, type names, help and errors, hyperd's
// and hyperctl's per-provider flags, hyperd's config schema (`providers.<name>`), the schemas
// the loader validates with and the providers the engine drives are all made from the records;
// no controller code names a kind.

// One managed object as `hyperctl get` shows it.
struct GetRow {
  const ManagedRecord* record = nullptr;
  const ObservedState* observed = nullptr;  // null: not observed
  Json spec;  // record->spec with the kind's defaults filled in (KindRecord::withDefaults)

  // spec[name], else the record's handles[name], else the observed fields[name]; "-" when none.
  // Strings are shown bare, anything else as JSON.
  std::string field(const std::string& name) const;
  // The observed fields[name] as JSON text; "-" when not observed.
  std::string observedField(const std::string& name) const;
};

// A column of `hyperctl get`.
struct Column {
  std::string header;  // "CIDR"
  std::function<std::string(const GetRow&)> value;
  bool wide = false;  // shown only with `-o wide`
};
// The column that shows row.field(name).
Column fieldColumn(std::string header, std::string name, bool wide = false);

// Where an object's log is kept, for `hyperctl logs KIND/NAME [-f]`.
struct LogFiles {
  // Oldest first: a rotated file, then the one being written, which -f follows until it is gone
  // (the object stopped).
  std::vector<std::string> files;
  // Said when the last file does not exist: "it is kept while the VM runs; ...".
  std::string whenMissing;
};

struct KindRecord {
  std::string kind;                     // "Network"
  std::string plural;                   // "networks": `hyperctl get networks`
  std::vector<std::string> shortNames;  // {"net"}
  // The JSON Schema of the kind's spec (draft-07; "x-hyper-kind" names the kind). The envelope
  // (apiVersion, metadata, spec.driftPolicy) is schemas/object.schema.json's, for every kind.
  std::string schema;
  // Printed between NAME and STATUS, REVISION, AGE.
  std::vector<Column> columns;
  // The spec with the kind's defaults filled in, for the columns; null: as written.
  std::function<Json(const std::string& name, const Json& spec)> withDefaults;
  // Field paths under spec ("token", "env[*].value") whose values are secret: the engine redacts
  // them from every plan change (so from diff, events and status), `hyperctl get -o json` from
  // specs and observed fields (reconciler/secret_fields.h). The inventory keeps the spec as
  // applied, since plan compares against it: a value that must not rest on disk in clear is
  // written sealed in the manifest (the Secret kind) and is opened only by its provider.
  // Only the test kind Widget has one today.
  std::vector<std::string> secretFields;
  // Field paths under spec ("initramfs.files[*].source") whose string values name files of the
  // manifests' tree, relative to the directory of the manifest that declares the object (no
  // "..", not absolute, no symlinks). The loader reads them at the manifest's revision into
  // Object::files, where the provider takes the bytes; reconciler/file_sources.h.
  std::vector<std::string> fileSources;
  // Field paths under spec ("script.source.path") whose string values name a directory of the
  // manifests' tree, read whole (every file, directory and symlink below it) into a directory
  // archive in Object::files (reconciler/directory_archive.h), with the same rules.
  std::vector<std::string> directorySources;
  // The log of the object `name` (a DNS label; checked before), with hyperctl's state dir. Null:
  // the kind keeps no logs.
  std::function<LogFiles(const std::string& name, const std::string& stateDir)> logs;
  // Whether an object of the kind, as last applied (`spec`), is running work that a delete
  // interrupts (a VM that is not `running: false`): a revision deleting more than half of the
  // running objects is held (controller/hold.h). Null: never.
  std::function<bool(const Json& spec)> running;
  // Its objects make content-addressed artifacts (handles.artifacts) from their spec and inputs
  // alone, deterministically: `hyperctl rebuild` makes them again in a scratch state dir and
  // compares digests. Only such kinds are applied by a rebuild.
  bool reproducible = false;
};

// One provider and the kinds it owns.
struct ProviderRecord {
  std::string name;  // "broker": hyperd's config `providers.broker`, flags --broker-<setting>
  std::vector<KindRecord> kinds;
  // The JSON Schema of the provider's settings (`providers.<name>`): a draft-07 object schema
  // whose properties are strings; each is also a flag `--<name>-<property>` of hyperd and
  // hyperctl, described by its "description". "": no settings.
  std::string settingsSchema;
  // Makes the provider from its settings (an object; {} when none are given). Its kinds() must be
  // the record's kinds.
  // `stateDir` is the state directory of the hyperd or hyperctl making it (for a provider that
  // keeps files there, like the Build provider's artifact store).
  std::function<Result<std::unique_ptr<Provider>>(const Json& settings,
                                                  const std::string& stateDir)>
      make;
};

class KindRegistry {
 public:
  // Checks the records: kind names, plurals and short names unique across all of them; every
  // schema loads and names its kind; every settings schema is an object schema of strings;
  // secret and file source field paths parse.
  static Result<std::shared_ptr<const KindRegistry>> create(std::vector<ProviderRecord> records);

  const std::vector<ProviderRecord>& providers() const { return records_; }

  // The kind that `type` names: its kind ("NetworkPolicy"), in any case ("networkpolicy"), its
  // plural ("networkpolicies") or a short name ("netpol"). Null when none.
  const KindRecord* find(std::string_view type) const;
  // "networks, networkpolicies, vms or brokerrules": for help and errors. `only`: the kinds for
  // which it is true ("vms" for the kinds with logs).
  std::string pluralsText(const std::function<bool(const KindRecord&)>& only = nullptr) const;

  // The envelope schema and every kind's.
  std::shared_ptr<const SchemaRegistry> schemas() const { return schemas_; }
  // Whether a managed object is running work (its kind's KindRecord::running), for the hold.
  std::function<bool(const ManagedRecord&)> runningObjects() const;
  // The kind's secret fields, parsed (empty for a kind without, or not known).
  const SecretFields& secretFieldsOf(const std::string& kind) const;
  const std::map<std::string, SecretFields>& secretFields() const { return secretFields_; }
  // The kinds' file source fields, parsed, for the loader (kinds with any).
  const std::map<std::string, FileSourceFields>& fileSources() const { return fileSources_; }

  // One setting of one provider, for flags.
  struct Setting {
    std::string provider;     // "broker"
    std::string key;          // "rules"
    std::string description;  // from the settings schema
    std::string flag() const { return "--" + provider + "-" + key; }
  };
  std::vector<Setting> settings() const;
  // The `providers` property of hyperd's config schema: an object with one optional property per
  // provider that has settings.
  Json settingsSchema() const;

  // Makes every provider, in record order, from `settings` (an object keyed by provider name;
  // missing or null: {}). The error names the provider.
  Result<std::vector<std::unique_ptr<Provider>>> makeProviders(
      const Json& settings, const std::string& stateDir = "") const;

 private:
  std::vector<ProviderRecord> records_;
  std::shared_ptr<const SchemaRegistry> schemas_;
  std::map<std::string, SecretFields> secretFields_;     // kinds with any
  std::map<std::string, FileSourceFields> fileSources_;  // kinds with any
};

// The compiled-in text of schemas/<fileName> ("network.schema.json"); empty when there is none.
std::string embeddedSchemaText(std::string_view fileName);

}  // namespace hyper
