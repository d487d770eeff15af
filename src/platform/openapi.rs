//! The binding API as an OpenAPI 3.1 document, served at `GET /openapi.json`
//! beside the API. Built from [`OPERATIONS`]: one entry per operation of the
//! router (a test checks the names are exactly `OPERATIONS_A` and
//! `OPERATIONS_B`, and that each operation called without parameters asks
//! for the first required parameter listed here, as the handlers do).

use serde_json::{Map, Value, json};

use super::{BASE_A, BASE_B};

/// What a parameter holds.
#[derive(Clone, Copy)]
pub enum Kind {
    /// A positive integer id.
    Id,
    /// A non-negative integer.
    Uint,
    /// A privacy number X of the pool.
    Virtual,
    /// A real mainland mobile number.
    Mobile,
    /// Free text.
    Text,
}

pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub description: &'static str,
}

pub struct Operation {
    pub name: &'static str,
    /// Base path B (else A).
    pub b: bool,
    pub summary: &'static str,
    pub params: &'static [Param],
}

const fn req(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required: true,
        description,
    }
}
const fn opt(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required: false,
        description,
    }
}

/// Every operation, in the seed's order (docs/platform-api.md).
pub const OPERATIONS: &[Operation] = &[
    Operation {
        name: "BindAxNumber",
        b: false,
        summary: "AX binding of X to the user's current phone (the one MQ176 recorded), at X's carrier. DataBody: [X].",
        params: &[
            req("userid", Kind::Id, "the agent"),
            opt("regionid", Kind::Uint, "region (default 0)"),
            req("private_number", Kind::Virtual, "X, a number of the pool"),
            opt(
                "addUser",
                Kind::Text,
                "who asks (recorded by the seed; not used)",
            ),
            opt("lastUser", Kind::Text, "as addUser"),
        ],
    },
    Operation {
        name: "BindAxNumberByUserPhone",
        b: false,
        summary: "As BindAxNumber, with A given. DataBody: [X].",
        params: &[
            req("userid", Kind::Id, "the agent"),
            opt("regionid", Kind::Uint, "region (default 0)"),
            req("private_number", Kind::Virtual, "X, a number of the pool"),
            req("userPhone", Kind::Mobile, "A: the phone to bind X to"),
            opt("addUser", Kind::Text, "who asks"),
            opt("lastUser", Kind::Text, "as addUser"),
        ],
    },
    Operation {
        name: "UnBindAgentNumber",
        b: false,
        summary: "Ends the AX binding at the carrier; X stays the user's number of record, unbound. DataBody: [X].",
        params: &[
            req("userid", Kind::Id, "the agent"),
            req("private_number", Kind::Virtual, "X"),
        ],
    },
    Operation {
        name: "ReleaseTelX",
        b: false,
        summary: "Unbinds X if bound and returns it to its platform's free pool. DataBody: [X], or [] when the user does not hold X.",
        params: &[
            req("userId", Kind::Id, "the agent"),
            req("private_number", Kind::Virtual, "X"),
        ],
    },
    Operation {
        name: "QueryAgentNumbers",
        b: false,
        summary: "The user's numbers with their states (read only).",
        params: &[req("userid", Kind::Id, "the agent")],
    },
    Operation {
        name: "UpdateNumberState",
        b: false,
        summary: "With userid and tuserid: moves the user's numbers to account tuserid. With private_number and state: sets X's number state (dictionary 1527).",
        params: &[
            opt("userid", Kind::Id, "the account the numbers leave"),
            opt("tuserid", Kind::Id, "the account they move to"),
            opt("private_number", Kind::Virtual, "X"),
            opt("state", Kind::Uint, "X's new number state"),
        ],
    },
    Operation {
        name: "ChangeBindANumber",
        b: false,
        summary: "The carrier's update of A on X's binding, then the binding's A. DataBody: [].",
        params: &[
            req("userId", Kind::Id, "the agent"),
            req("private_number", Kind::Virtual, "X"),
            req("telA", Kind::Mobile, "the new A"),
        ],
    },
    Operation {
        name: "GetCallNumber",
        b: false,
        summary: "XB binding of the agent's own X to B = Mobile for `expiration` seconds; the MQ108 unbind follows when it expires. DataBody: [{phone, callbackId}].",
        params: &[
            opt(
                "xbid",
                Kind::Uint,
                "the caller's id of the call (callbackId); default 0",
            ),
            req("userid", Kind::Id, "the agent"),
            req("Mapclassid", Kind::Uint, "the map class of the house"),
            req(
                "Mapid",
                Kind::Uint,
                "the house (houseid of the call-log event)",
            ),
            opt("Contactmapclassid", Kind::Uint, "default 0"),
            opt("Contactid", Kind::Uint, "default 0"),
            req("Mobile", Kind::Mobile, "B, the customer"),
            opt(
                "expiration",
                Kind::Uint,
                "seconds (default [platform] xb_default_expiration_secs)",
            ),
        ],
    },
    Operation {
        name: "TemporaryBindNumber",
        b: false,
        summary: "Fault mode: the matching bound numbers get bind state 5 (all of them with no parameter). DataBody: the numbers changed.",
        params: &[
            opt("userid", Kind::Id, "only this agent's numbers"),
            opt("private_number", Kind::Virtual, "only this X"),
        ],
    },
    Operation {
        name: "TemporaryUnBindNumber",
        b: false,
        summary: "Bind state 5 back to 1, locally, no carrier call. DataBody: the numbers changed.",
        params: &[
            opt("userid", Kind::Id, "only this agent's numbers"),
            opt("private_number", Kind::Virtual, "only this X"),
        ],
    },
    Operation {
        name: "TemporaryUnBindNumberToAli",
        b: false,
        summary: "Ends every state-5 binding of the user (or of the number) at its carrier; the numbers stay the user's, unbound. One of userid and private_number is required.",
        params: &[
            opt("userid", Kind::Id, "the agent"),
            opt("regionid", Kind::Uint, "region"),
            opt("private_number", Kind::Virtual, "X"),
            opt("addUser", Kind::Text, "who asks"),
            opt("lastUser", Kind::Text, "as addUser"),
        ],
    },
    Operation {
        name: "QueryUserAxs",
        b: false,
        summary: "PrivateNumber_user_axs of the user: [{xNumber, bindType}] or [].",
        params: &[req("userid", Kind::Id, "the agent")],
    },
    Operation {
        name: "BindAxByplatform",
        b: true,
        summary: "Binds a free X of the platform to the user. DataBody: [true], ResultMsg 小号分配成功:<X>.",
        params: &[
            req("userId", Kind::Id, "the agent"),
            req("platformID", Kind::Id, "1 东信, 2 玖云, 3 阿里云"),
        ],
    },
    Operation {
        name: "UserBindLinShiNumber",
        b: true,
        summary: "A temporary X of fault mode (bind state 5), one per user. DataBody: [1].",
        params: &[
            req("userId", Kind::Id, "the agent"),
            req("platformID", Kind::Id, "the platform"),
        ],
    },
];

fn param_schema(kind: Kind) -> Value {
    match kind {
        Kind::Id => {
            json!({"type": "string", "pattern": "^[0-9]+$", "description": "a positive integer"})
        }
        Kind::Uint => json!({"type": "string", "pattern": "^[0-9]+$"}),
        Kind::Virtual => {
            json!({"type": "string", "description": "a privacy number of the pool (5-20 digits)"})
        }
        Kind::Mobile => {
            json!({"type": "string", "pattern": "^(\\+?86)?1[0-9]{10}$", "description": "a mainland mobile number"})
        }
        Kind::Text => json!({"type": "string"}),
    }
}

/// The OpenAPI 3.1 document of the binding API.
pub fn document() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let base = if op.b { BASE_B } else { BASE_A };
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut parameters = Vec::new();
        for p in op.params {
            let mut schema = param_schema(p.kind);
            schema["description"] = json!(p.description);
            properties.insert(p.name.to_owned(), schema.clone());
            if p.required {
                required.push(p.name);
            }
            parameters.push(json!({
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": format!("{} (the name matches in any case; also accepted in a form or JSON body)", p.description),
                "schema": schema,
            }));
        }
        let body_schema = json!({"type": "object", "properties": properties, "required": required});
        let envelope = if op.b {
            "#/components/schemas/ShortEnvelope"
        } else {
            "#/components/schemas/Envelope"
        };
        let responses = json!({
            "200": {
                "description": "The seed's envelope: ResultCode 2000 with DataBody on success, 5000 with the reason in ResultMsg on failure (a missing parameter: 缺少参数[name]).",
                "content": {"application/json": {"schema": {"$ref": envelope}}}
            },
            "401": {"description": "Credentials are configured and the request's Basic or Bearer credentials are missing or wrong."},
            "404": {"description": "No such operation."},
            "413": {"description": "The body is larger than [platform] max_body_bytes."}
        });
        let operation = |method: &str| {
            let mut o = json!({
                "operationId": format!("{}{}", op.name, if method == "get" { "" } else { "Post" }),
                "summary": op.summary,
                "tags": [if op.b { "B" } else { "A" }],
                "responses": responses,
            });
            if method == "get" {
                o["parameters"] = json!(parameters);
            } else {
                o["requestBody"] = json!({
                    "required": false,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": body_schema},
                        "application/json": {"schema": body_schema}
                    }
                });
            }
            o
        };
        paths.insert(
            format!("{base}/{}", op.name),
            json!({"get": operation("get"), "post": operation("post")}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "axn-worker binding API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The privacy-number platform's binding API (the seed's PrivateNumberApiController and PrivateNumber_ax), over the same Redis state the worker keeps. Every operation answers HTTP 200 with the seed's envelope; the outcome is ResultCode. docs/platform-api.md has the state machines and every failure message."
        },
        "tags": [
            {"name": "A", "description": BASE_A},
            {"name": "B", "description": BASE_B}
        ],
        "paths": paths,
        "components": {
            "schemas": {
                "Envelope": {
                    "type": "object",
                    "required": ["RequestId", "ResultCode", "ResultMsg", "DataBody"],
                    "properties": {
                        "RequestId": {"type": "string", "description": "32 hex digits"},
                        "ResultCode": {"type": "integer", "enum": [2000, 5000]},
                        "ResultMsg": {"type": "string", "description": "SUCCESS, or why not"},
                        "DebugMsg": {"type": "string"},
                        "IsEncrypt": {"type": "integer"},
                        "DataCount": {"type": "integer"},
                        "PageSize": {"type": "integer"},
                        "PageIndex": {"type": "integer"},
                        "DataBody": {"type": "array"},
                        "EncDataBody": {"type": "string"}
                    }
                },
                "ShortEnvelope": {
                    "type": "object",
                    "required": ["ResultCode", "ResultMsg", "DataBody"],
                    "properties": {
                        "ResultCode": {"type": "integer", "enum": [2000, 5000]},
                        "ResultMsg": {"type": "string"},
                        "DataBody": {"type": "array"}
                    }
                }
            },
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer"}
            }
        },
        "security": [{}, {"basic": []}, {"bearer": []}]
    })
}
