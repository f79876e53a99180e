//! The v3 API's description of itself, in Norman's shapes: the `/v3` root (an `apiRoot` whose
//! links name every collection by `pluralName`) and the `schema` resources of `/v3/schemas`
//! that schema-driven clients (Rancher's Python `gdapi` client, the Terraform provider's
//! generated client) build their methods from.
//!
//! Field names, types and actions are Rancher's; `collectionMethods` and `resourceMethods`
//! list only what the fake implements (Rancher lists more, such as `POST` on clusters), so a
//! client never offers a call the fake would refuse. `collectionFilters` follow Norman's rule:
//! string, enum, int, date and reference fields filter with `eq`, `ne`, `in`, `notin`; booleans
//! with `eq`, `ne`; other fields do not filter.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// A field of a type's `resourceFields`.
struct Field {
    name: &'static str,
    ty: &'static str,
    /// `c` create, `u` update, `r` required, `n` nullable, `w` write-only.
    flags: &'static str,
    options: &'static [&'static str],
}

const fn f(name: &'static str, ty: &'static str, flags: &'static str) -> Field {
    Field {
        name,
        ty,
        flags,
        options: &[],
    }
}

/// One type of the v3 API.
pub(super) struct Type {
    pub(super) id: &'static str,
    plural: &'static str,
    collection_methods: &'static [&'static str],
    resource_methods: &'static [&'static str],
    /// Whether it is a stored resource with Kubernetes metadata (`labels`, `created`, …),
    /// not an action's input or output.
    resource: bool,
    fields: &'static [Field],
    /// `(name, input, output)`.
    resource_actions: &'static [(&'static str, &'static str, &'static str)],
}

const GET: &[&str] = &["GET"];
const GET_POST: &[&str] = &["GET", "POST"];
const GET_DELETE: &[&str] = &["GET", "DELETE"];
const NONE: &[&str] = &[];

/// The types the fake serves, with their action inputs and outputs.
pub(super) const TYPES: &[Type] = &[
    Type {
        id: "schema",
        plural: "schemas",
        collection_methods: GET,
        resource_methods: GET,
        resource: false,
        fields: &[
            f("collectionActions", "map[json]", ""),
            f("collectionFields", "map[json]", ""),
            f("collectionFilters", "map[json]", ""),
            f("collectionMethods", "array[string]", ""),
            f("pluralName", "string", ""),
            f("resourceActions", "map[json]", ""),
            f("resourceFields", "map[json]", ""),
            f("resourceMethods", "array[string]", ""),
            f("version", "map[json]", ""),
        ],
        resource_actions: &[],
    },
    Type {
        id: "user",
        plural: "users",
        collection_methods: GET_POST,
        resource_methods: &["GET", "PUT", "DELETE"],
        resource: true,
        fields: &[
            f("name", "string", "cu"),
            f("description", "string", "cu"),
            f("username", "string", "c"),
            f("password", "password", "cw"),
            f("mustChangePassword", "boolean", "c"),
            f("enabled", "boolean", "cu"),
            f("me", "boolean", ""),
            f("principalIds", "array[reference[principal]]", ""),
            f("state", "string", ""),
        ],
        resource_actions: &[("setpassword", "setPasswordInput", "user")],
    },
    Type {
        id: "setPasswordInput",
        plural: "setPasswordInputs",
        collection_methods: NONE,
        resource_methods: NONE,
        resource: false,
        fields: &[f("newPassword", "string", "cr")],
        resource_actions: &[],
    },
    Type {
        id: "globalRoleBinding",
        plural: "globalRoleBindings",
        collection_methods: GET_POST,
        resource_methods: GET_DELETE,
        resource: true,
        fields: &[
            f("globalRoleId", "reference[globalRole]", "cr"),
            f("userId", "reference[user]", "c"),
            f("userPrincipalId", "reference[principal]", "c"),
            f("groupPrincipalId", "reference[principal]", "c"),
        ],
        resource_actions: &[],
    },
    Type {
        id: "cluster",
        plural: "clusters",
        collection_methods: GET,
        resource_methods: GET,
        resource: true,
        fields: &[
            f("name", "string", "cru"),
            f("description", "string", "cu"),
            f("internal", "boolean", ""),
            f("state", "string", ""),
        ],
        resource_actions: &[("generateKubeconfig", "", "generateKubeConfigOutput")],
    },
    Type {
        id: "generateKubeConfigOutput",
        plural: "generateKubeConfigOutputs",
        collection_methods: NONE,
        resource_methods: NONE,
        resource: false,
        fields: &[f("config", "string", "")],
        resource_actions: &[],
    },
    Type {
        id: "project",
        plural: "projects",
        collection_methods: GET,
        resource_methods: GET,
        resource: true,
        fields: &[
            f("name", "string", "cru"),
            f("clusterId", "reference[cluster]", "cr"),
            f("description", "string", "cu"),
            f("namespaceId", "string", ""),
            f("state", "string", ""),
        ],
        resource_actions: &[],
    },
    Type {
        id: "roleTemplate",
        plural: "roleTemplates",
        collection_methods: GET,
        resource_methods: GET,
        resource: true,
        fields: &[
            f("name", "string", "cu"),
            Field {
                name: "context",
                ty: "enum",
                flags: "cu",
                options: &["project", "cluster"],
            },
            f("description", "string", "cu"),
            f("locked", "boolean", "cu"),
            f("builtin", "boolean", ""),
            f("external", "boolean", "cu"),
            f("hidden", "boolean", "cu"),
            f("administrative", "boolean", "cu"),
            f("clusterCreatorDefault", "boolean", "cu"),
            f("projectCreatorDefault", "boolean", "cu"),
            f("roleTemplateIds", "array[reference[roleTemplate]]", "cu"),
            f("rules", "array[policyRule]", "cu"),
        ],
        resource_actions: &[],
    },
    Type {
        id: "clusterRoleTemplateBinding",
        plural: "clusterRoleTemplateBindings",
        collection_methods: GET_POST,
        resource_methods: GET_DELETE,
        resource: true,
        fields: &[
            f("clusterId", "reference[cluster]", "cr"),
            f("roleTemplateId", "reference[roleTemplate]", "cr"),
            f("userId", "reference[user]", "c"),
            f("userPrincipalId", "reference[principal]", "c"),
            f("groupId", "reference[group]", "c"),
            f("groupPrincipalId", "reference[principal]", "c"),
            f("namespaceId", "string", ""),
        ],
        resource_actions: &[],
    },
    Type {
        id: "projectRoleTemplateBinding",
        plural: "projectRoleTemplateBindings",
        collection_methods: GET_POST,
        resource_methods: GET_DELETE,
        resource: true,
        fields: &[
            f("projectId", "reference[project]", "cr"),
            f("roleTemplateId", "reference[roleTemplate]", "cr"),
            f("userId", "reference[user]", "c"),
            f("userPrincipalId", "reference[principal]", "c"),
            f("groupId", "reference[group]", "c"),
            f("groupPrincipalId", "reference[principal]", "c"),
            f("serviceAccount", "string", "c"),
            f("namespaceId", "string", ""),
        ],
        resource_actions: &[],
    },
    Type {
        id: "token",
        plural: "tokens",
        collection_methods: GET_POST,
        resource_methods: GET_DELETE,
        resource: true,
        fields: &[
            f("authProvider", "string", ""),
            f("clusterId", "reference[cluster]", "c"),
            f("current", "boolean", ""),
            f("description", "string", "c"),
            f("enabled", "boolean", ""),
            f("expired", "boolean", ""),
            f("expiresAt", "string", ""),
            f("isDerived", "boolean", ""),
            f("token", "string", "w"),
            f("ttl", "int", "c"),
            f("userId", "reference[user]", ""),
            f("userPrincipal", "string", ""),
        ],
        resource_actions: &[],
    },
];

/// Kubernetes metadata every stored resource carries.
const META: &[Field] = &[
    f("annotations", "map[string]", "cu"),
    f("labels", "map[string]", "cu"),
    f("created", "date", ""),
    f("creatorId", "reference[user]", ""),
    f("removed", "date", ""),
    f("uuid", "string", ""),
];

/// `{group, version, path}` of the management API.
fn version() -> Value {
    json!({"group": "management.cattle.io", "version": "v3", "path": "/v3"})
}

impl Type {
    /// The path segment of its collection: the lowercase `pluralName`, as Norman builds it.
    pub(super) fn collection(&self) -> String {
        self.plural.to_ascii_lowercase()
    }

    fn listable(&self) -> bool {
        self.collection_methods.contains(&"GET")
    }

    pub(super) fn creatable(&self) -> bool {
        self.collection_methods.contains(&"POST")
    }

    fn all_fields(&self) -> impl Iterator<Item = &Field> {
        let meta = if self.resource { META } else { &[] };
        self.fields.iter().chain(meta)
    }

    /// The modifiers each filterable field accepts.
    fn filters(&self) -> BTreeMap<&'static str, &'static [&'static str]> {
        if !self.listable() {
            return BTreeMap::new();
        }
        self.all_fields()
            .filter_map(|field| {
                let mods: &'static [&'static str] = match field.ty {
                    "string" | "enum" | "int" | "date" => &["eq", "ne", "in", "notin"],
                    "boolean" => &["eq", "ne"],
                    t if t.starts_with("reference[") => &["eq", "ne", "in", "notin"],
                    _ => return None,
                };
                Some((field.name, mods))
            })
            .collect()
    }

    /// The `schema` resource describing this type.
    pub(super) fn to_json(&self, base: &str) -> Value {
        let mut fields = Map::new();
        for field in self.all_fields() {
            let mut v = json!({
                "type": field.ty,
                "create": field.flags.contains('c'),
                "update": field.flags.contains('u'),
            });
            for (flag, key) in [('r', "required"), ('n', "nullable"), ('w', "writeOnly")] {
                if field.flags.contains(flag) {
                    v[key] = true.into();
                }
            }
            if !field.options.is_empty() {
                v["options"] = json!(field.options);
            }
            fields.insert(field.name.to_owned(), v);
        }
        let actions: Map<String, Value> = self
            .resource_actions
            .iter()
            .map(|(name, input, output)| {
                let mut a = Map::new();
                if !input.is_empty() {
                    a.insert("input".into(), (*input).into());
                }
                if !output.is_empty() {
                    a.insert("output".into(), (*output).into());
                }
                ((*name).to_owned(), Value::Object(a))
            })
            .collect();
        let filters: Map<String, Value> = self
            .filters()
            .into_iter()
            .map(|(name, mods)| (name.to_owned(), json!({"modifiers": mods})))
            .collect();
        let mut links = json!({"self": format!("{base}/v3/schemas/{}", self.id)});
        if self.listable() {
            links["collection"] = format!("{base}/v3/{}", self.collection()).into();
        }
        json!({
            "type": "schema",
            "baseType": "schema",
            "id": self.id,
            "links": links,
            "actions": {},
            "version": version(),
            "pluralName": self.plural,
            "collectionMethods": self.collection_methods,
            "resourceMethods": self.resource_methods,
            "resourceFields": fields,
            "resourceActions": actions,
            "collectionActions": {},
            "collectionFields": {},
            "collectionFilters": filters,
        })
    }

    /// The filters of a list request that Norman would apply, as `(field, modifier, value)`:
    /// `field=v` is `eq`, `field_mod=v` another modifier. Parameters that name no filterable
    /// field, or a modifier the field does not take, are ignored, as Norman ignores them.
    pub(super) fn conditions<'q>(
        &self,
        query: &'q BTreeMap<String, String>,
    ) -> Vec<(&'q str, &'q str, &'q str)> {
        let filters = self.filters();
        query
            .iter()
            .filter_map(|(key, value)| {
                let (name, modifier) = match key.rsplit_once('_') {
                    Some((name, modifier)) if !name.is_empty() => (name, modifier),
                    _ => (key.as_str(), "eq"),
                };
                let mods = filters.get(name)?;
                mods.contains(&modifier)
                    .then_some((name, modifier, value.as_str()))
            })
            .collect()
    }

    /// A collection's `filters`: every filterable field, `null` unless the request used it.
    pub(super) fn applied_filters(&self, conditions: &[(&str, &str, &str)]) -> Value {
        let mut out = Map::new();
        for name in self.filters().keys() {
            let applied: Vec<Value> = conditions
                .iter()
                .filter(|(field, _, _)| field == name)
                .map(|(_, modifier, value)| json!({"modifier": modifier, "value": value}))
                .collect();
            out.insert(
                (*name).to_owned(),
                if applied.is_empty() {
                    Value::Null
                } else {
                    Value::Array(applied)
                },
            );
        }
        Value::Object(out)
    }
}

/// The type whose collection is `/v3/{collection}`.
pub(super) fn by_collection(collection: &str) -> Option<&'static Type> {
    TYPES
        .iter()
        .find(|t| t.listable() && t.collection() == collection)
}

/// `GET /v3`: the API root, linking every collection by its `pluralName`.
pub(super) fn api_root(base: &str) -> Value {
    let mut links = Map::new();
    for t in TYPES.iter().filter(|t| t.listable()) {
        links.insert(
            t.plural.to_owned(),
            format!("{base}/v3/{}", t.collection()).into(),
        );
    }
    links.insert("root".into(), format!("{base}/v3").into());
    links.insert("self".into(), format!("{base}/v3").into());
    json!({
        "type": "apiRoot",
        "baseType": "apiRoot",
        "apiVersion": version(),
        "links": links,
        "actions": {},
    })
}

/// `GET /v3/schemas`.
pub(super) fn collection(base: &str) -> Value {
    let data: Vec<Value> = TYPES.iter().map(|t| t.to_json(base)).collect();
    json!({
        "type": "collection",
        "resourceType": "schema",
        "links": {"self": format!("{base}/v3/schemas")},
        "actions": {},
        "pagination": {"limit": data.len().max(1), "total": data.len()},
        "filters": {},
        "data": data,
    })
}

/// `GET /v3/schemas/{id}`.
pub(super) fn by_id(id: &str) -> Option<&'static Type> {
    TYPES.iter().find(|t| t.id == id)
}
