//! The HTTP API as an OpenAPI 3.1 document, served at `GET /openapi.json`:
//! the binding API's operations, built from [`OPERATIONS`] (one entry per
//! operation of the router: a test checks the names are exactly
//! `OPERATIONS_A` and `OPERATIONS_B`), the number-mapping API (when it is
//! on) and the health and metrics endpoints.
//!
//! The document says what the server does, not more: each parameter's
//! schema is the rule its parser applies (`api::Params`: values trimmed of
//! Unicode whitespace, empty = absent, ids 1..2^31-1, numbers normalized as
//! the contract says), each operation's DataBody has its own item schema,
//! every status the server answers is listed with its body, and the
//! security is the one configured (none only when none is). Unit tests
//! compare the parameter schemas with the parser on generated values;
//! schemathesis and a generated client use the document in the suite.

use serde_json::{Map, Value, json};

use super::{BASE_A, BASE_B, api::ID_MAX, xb::MAX_EXPIRATION_SECS};
use crate::config::Settings;
use crate::patterns::{range_regex, ws};

/// What a parameter holds, as its parser reads it.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A positive id: 1 to [`ID_MAX`].
    Id,
    /// A non-negative integer up to its maximum.
    Uint(u64),
    /// A privacy number X: a mobile of 16, 17 or 19.
    Virtual,
    /// A real mainland mobile: 13, 14, 15 or 18.
    Mobile,
    /// Free text (recorded by the seed, not used).
    Text,
}

/// How an absent or empty parameter is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Absent or empty: `缺少参数[name]`.
    Required,
    /// Absent or empty: the default.
    Optional,
    /// A filter: absent selects all; given empty is refused
    /// (`参数[name]不能为空`), so an empty value cannot select everything.
    Filter,
}

pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub need: Need,
    pub description: &'static str,
    /// A value for the operation's example.
    pub example: &'static str,
}

/// The items of an operation's DataBody, success and failure together.
#[derive(Clone, Copy, Debug)]
pub enum Data {
    /// Privacy numbers (`["<X>"]`), or `[]`.
    Numbers,
    /// Privacy numbers, or `["True"]` (a number's state set).
    NumbersOrTrue,
    /// Always `[]`.
    Empty,
    /// `[true]` on success, `[false]` for "already holds a number", or `[]`.
    Flag,
    /// `[1]` on success, or `[]`.
    One,
    /// QueryAgentNumbers' rows.
    Rows,
    /// QueryUserAxs' entries.
    Axs,
    /// `[{phone, callbackId}]` on success; on failure `["<Mobile as given>"]`.
    Call,
}

pub struct Operation {
    pub name: &'static str,
    /// Base path B (else A).
    pub b: bool,
    pub summary: &'static str,
    pub params: &'static [Param],
    pub data: Data,
    /// The example answer: the DataBody and ResultMsg of a success, as in
    /// docs/platform-api.md's transcript.
    pub example: (&'static str, &'static str),
}

const fn p(
    name: &'static str,
    kind: Kind,
    need: Need,
    description: &'static str,
    example: &'static str,
) -> Param {
    Param {
        name,
        kind,
        need,
        description,
        example,
    }
}

use Kind::*;
use Need::*;

const MAX_EXP: u64 = MAX_EXPIRATION_SECS;

/// Every operation, in the seed's order (docs/platform-api.md).
pub const OPERATIONS: &[Operation] = &[
    Operation {
        name: "BindAxNumber",
        b: false,
        summary: "AX binding of X to the user's current phone (the one MQ176 recorded), at X's carrier. DataBody: [X].",
        params: &[
            p("userid", Id, Required, "the agent", "74705"),
            p(
                "regionid",
                Uint(ID_MAX),
                Optional,
                "region (default 0)",
                "1",
            ),
            p(
                "private_number",
                Virtual,
                Required,
                "X, a number of the pool",
                "17111526090",
            ),
            p(
                "addUser",
                Text,
                Optional,
                "who asks (recorded by the seed; not used)",
                "74705",
            ),
            p("lastUser", Text, Optional, "as addUser", "74705"),
        ],
        data: Data::Numbers,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "BindAxNumberByUserPhone",
        b: false,
        summary: "As BindAxNumber, with A given. DataBody: [X].",
        params: &[
            p("userid", Id, Required, "the agent", "74706"),
            p(
                "regionid",
                Uint(ID_MAX),
                Optional,
                "region (default 0)",
                "1",
            ),
            p(
                "private_number",
                Virtual,
                Required,
                "X, a number of the pool",
                "17111526090",
            ),
            p(
                "userPhone",
                Mobile,
                Required,
                "A: the phone to bind X to",
                "13900000006",
            ),
            p("addUser", Text, Optional, "who asks", "1"),
            p("lastUser", Text, Optional, "as addUser", "1"),
        ],
        data: Data::Numbers,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "UnBindAgentNumber",
        b: false,
        summary: "Ends the AX binding at the carrier; X stays the user's number of record, unbound. DataBody: [X].",
        params: &[
            p("userid", Id, Required, "the agent", "74706"),
            p("private_number", Virtual, Required, "X", "17111526090"),
        ],
        data: Data::Numbers,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "ReleaseTelX",
        b: false,
        summary: "Unbinds X if bound and returns it to its platform's free pool. DataBody: [X], or [] when the user does not hold X.",
        params: &[
            p("userId", Id, Required, "the agent", "74706"),
            p("private_number", Virtual, Required, "X", "17111526090"),
        ],
        data: Data::Numbers,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "QueryAgentNumbers",
        b: false,
        summary: "The user's numbers with their states (read only).",
        params: &[p("userid", Id, Required, "the agent", "74705")],
        data: Data::Rows,
        example: (
            r#"[{"ax_numA":"138****0002","ax_number":"17111526090","ax_subid":"1000855942316815","bindState":"已绑定","numberState":"正常","plateformid":3,"platform_name":"阿里云","pool_id":17,"tuserId":0,"tuserName":"","userId":74705,"userName":""}]"#,
            "SUCCESS",
        ),
    },
    Operation {
        name: "UpdateNumberState",
        b: false,
        summary: "With userid and tuserid: moves the user's numbers to account tuserid (DataBody: the numbers moved). With private_number and state: sets X's number state, dictionary 1527 (DataBody: [\"True\"]). Both at once is refused.",
        params: &[
            p(
                "userid",
                Id,
                Optional,
                "the account the numbers leave",
                "74705",
            ),
            p("tuserid", Id, Optional, "the account they move to", "74706"),
            p("private_number", Virtual, Optional, "X", "17111526090"),
            p(
                "state",
                Uint(3),
                Optional,
                "X's new number state: 0 正常, 1 停用, 2 故障, 3 回收",
                "2",
            ),
        ],
        data: Data::NumbersOrTrue,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "ChangeBindANumber",
        b: false,
        summary: "The carrier's update of A on X's binding, then the binding's A. DataBody: [].",
        params: &[
            p("userId", Id, Required, "the agent", "74705"),
            p("private_number", Virtual, Required, "X", "17111526090"),
            p("telA", Mobile, Required, "the new A", "13800000009"),
        ],
        data: Data::Empty,
        example: ("[]", "SUCCESS"),
    },
    Operation {
        name: "GetCallNumber",
        b: false,
        summary: "XB binding of the agent's own X to B = Mobile for `expiration` seconds; the MQ108 unbind follows when it expires. DataBody: [{phone, callbackId}]; on failure [Mobile as given].",
        params: &[
            p(
                "xbid",
                Uint(ID_MAX),
                Optional,
                "the caller's id of the call (callbackId); default 0",
                "1",
            ),
            p("userid", Id, Required, "the agent", "74705"),
            p(
                "Mapclassid",
                Uint(ID_MAX),
                Required,
                "the map class of the house",
                "1",
            ),
            p(
                "Mapid",
                Uint(ID_MAX),
                Required,
                "the house (houseid of the call-log event)",
                "123456",
            ),
            p(
                "Contactmapclassid",
                Uint(ID_MAX),
                Optional,
                "default 0",
                "0",
            ),
            p("Contactid", Uint(ID_MAX), Optional, "default 0", "0"),
            p("Mobile", Mobile, Required, "B, the customer", "13700051234"),
            p(
                "expiration",
                Uint(MAX_EXP),
                Optional,
                "seconds; absent or 0: [platform] xb_default_expiration_secs",
                "120",
            ),
        ],
        data: Data::Call,
        example: (r#"[{"callbackId":1,"phone":"17111526090"}]"#, "SUCCESS"),
    },
    Operation {
        name: "TemporaryBindNumber",
        b: false,
        summary: "Fault mode: the matching bound numbers get bind state 5 (all of them with no parameter). DataBody: the numbers changed.",
        params: &[
            p("userid", Id, Filter, "only this agent's numbers", "74705"),
            p(
                "private_number",
                Virtual,
                Filter,
                "only this X",
                "17111526090",
            ),
        ],
        data: Data::Numbers,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "TemporaryUnBindNumber",
        b: false,
        summary: "Bind state 5 back to 1, locally, no carrier call. DataBody: the numbers changed.",
        params: &[
            p("userid", Id, Filter, "only this agent's numbers", "74705"),
            p(
                "private_number",
                Virtual,
                Filter,
                "only this X",
                "17111526090",
            ),
        ],
        data: Data::Numbers,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "TemporaryUnBindNumberToAli",
        b: false,
        summary: "Ends every state-5 binding of the user (or of the number) at its carrier; the numbers stay the user's, unbound. One of userid and private_number is required.",
        params: &[
            p("userid", Id, Filter, "the agent", "74706"),
            p("regionid", Uint(ID_MAX), Optional, "region", "1"),
            p("private_number", Virtual, Filter, "X", "17111526090"),
            p("addUser", Text, Optional, "who asks", "1"),
            p("lastUser", Text, Optional, "as addUser", "1"),
        ],
        data: Data::Numbers,
        example: (r#"["17111526090"]"#, "SUCCESS"),
    },
    Operation {
        name: "QueryUserAxs",
        b: false,
        summary: "PrivateNumber_user_axs of the user: [{xNumber, bindType}] or [].",
        params: &[p("userid", Id, Required, "the agent", "74705")],
        data: Data::Axs,
        example: (r#"[{"bindType":0,"xNumber":"17111526090"}]"#, "SUCCESS"),
    },
    Operation {
        name: "BindAxByplatform",
        b: true,
        summary: "Binds a free X of the platform to the user. DataBody: [true], ResultMsg 小号分配成功:<X>; [false] when the user holds a number already.",
        params: &[
            p("userId", Id, Required, "the agent", "51218"),
            p("platformID", Id, Required, "1 东信, 2 玖云, 3 阿里云", "3"),
        ],
        data: Data::Flag,
        example: ("[true]", "小号分配成功:17111526089"),
    },
    Operation {
        name: "UserBindLinShiNumber",
        b: true,
        summary: "A temporary X of fault mode (bind state 5), one per user. DataBody: [1].",
        params: &[
            p("userId", Id, Required, "the agent", "74705"),
            p("platformID", Id, Required, "the platform", "1"),
        ],
        data: Data::One,
        example: ("[1]", "SUCCESS"),
    },
];

/// A number's pattern as `api::number` reads it: trimmed; spaces and dashes
/// anywhere dropped; then an 11-digit mobile with `second` as its second
/// digit, bare or after +86, 0086 or 86.
fn mobile_regex(second: &str) -> String {
    let s = "[ -]*";
    let ws = ws();
    format!(
        "{ws}*{s}(?:\\+{s}8{s}6{s}|0{s}0{s}8{s}6{s}|8{s}6{s})?1{s}{second}{s}(?:[0-9]{s}){{9}}{ws}*"
    )
}

/// A PhoneToUID entry as `phone::normalize` reads it: trimmed, spaces and
/// dashes anywhere dropped, then +86 and a mainland mobile, or 5 to 20 digits
/// (which 86 or 0086 and a mobile are too).
pub fn mapping_phone() -> String {
    let ws = ws();
    format!(
        "^{ws}*[ -]*(?:\\+[ -]*8[ -]*6[ -]*1[ -]*(?:[0-9][ -]*){{10}}|(?:[0-9][ -]*){{5,20}}){ws}*$"
    )
}

/// A UIDToPhone entry: 3 digits and 7 lowercase letters (whitespace around
/// it ignored). Every pattern ends in optional whitespace, so that Python's
/// `$`, which also matches before a final newline, means what ECMA's does.
pub fn mapping_id() -> String {
    let ws = ws();
    format!("^{ws}*[0-9]{{3}}[a-z]{{7}}{ws}*$")
}

/// The schema of a parameter's text (query string or form) as its parser
/// reads it.
pub fn text_schema(kind: Kind, need: Need) -> Value {
    let ws = ws();
    let core = match kind {
        Id => format!("{ws}*0*{}{ws}*", range_regex(1, ID_MAX)),
        Uint(max) => format!("{ws}*0*{}{ws}*", range_regex(0, max)),
        Virtual => mobile_regex("[679]"),
        Mobile => mobile_regex("[3458]"),
        Text => return json!({"type": "string"}),
    };
    let pattern = if need == Optional {
        // Empty (or whitespace only) is absent: the default.
        format!("^(?:{ws}*|{core})$")
    } else {
        format!("^(?:{core})$")
    };
    json!({"type": "string", "pattern": pattern})
}

/// The schema of a JSON body member: the text schema, or for the integer
/// kinds a JSON number in range (a whole-number float such as `3.0` is that
/// integer, as JSON Schema counts it); `null` is an empty value.
fn json_member_schema(kind: Kind, need: Need) -> Value {
    let mut any = vec![text_schema(kind, need)];
    match kind {
        Id => any.push(json!({"type": "integer", "minimum": 1, "maximum": ID_MAX})),
        Uint(max) => any.push(json!({"type": "integer", "minimum": 0, "maximum": max})),
        // A mobile written as a JSON number: its digits, bare or after 86.
        Virtual | Mobile => {
            let seconds: &[u64] = if matches!(kind, Virtual) {
                &[6, 7, 9]
            } else {
                &[3, 4, 5, 8]
            };
            for &d in seconds {
                let lo = (10 + d) * 1_000_000_000;
                let hi = lo + 999_999_999;
                any.push(json!({"type": "integer", "minimum": lo, "maximum": hi}));
                let p = 86 * 100_000_000_000;
                any.push(json!({"type": "integer", "minimum": p + lo, "maximum": p + hi}));
            }
        }
        Text => any = vec![json!({"type": ["string", "number", "boolean", "null"]})],
    }
    if need == Optional && !matches!(kind, Text) {
        any.push(json!({"type": "null"}));
    }
    json!({"anyOf": any})
}

fn items_schema(data: Data) -> Value {
    let number = json!({"$ref": "#/components/schemas/PrivacyNumber"});
    match data {
        Data::Numbers => json!({"type": "array", "items": number}),
        Data::NumbersOrTrue => {
            json!({"type": "array", "items": {"anyOf": [number, {"const": "True"}]}})
        }
        Data::Empty => json!({"type": "array", "items": {}, "maxItems": 0}),
        Data::Flag => json!({"type": "array", "items": {"type": "boolean"}, "maxItems": 1}),
        Data::One => json!({"type": "array", "items": {"const": 1}, "maxItems": 1}),
        Data::Rows => {
            json!({"type": "array", "items": {"$ref": "#/components/schemas/AgentNumber"}})
        }
        Data::Axs => json!({"type": "array", "items": {"$ref": "#/components/schemas/UserAx"}}),
        Data::Call => json!({
            "type": "array",
            "maxItems": 1,
            "items": {"anyOf": [
                {"$ref": "#/components/schemas/CallNumber"},
                {"type": "string", "description": "on failure: Mobile as given"}
            ]}
        }),
    }
}

/// An operation's answer: the envelope of its base path with its DataBody.
fn answer_schema(op: &Operation) -> Value {
    let code = json!({"type": "integer", "enum": [2000, 5000], "description": "2000 success, 5000 refused (the reason in ResultMsg)"});
    let message = json!({"type": "string", "description": "SUCCESS (B: also 小号分配成功:<X>), or why not: docs/platform-api.md lists every message"});
    if op.b {
        return json!({
            "type": "object",
            "required": ["ResultCode", "ResultMsg", "DataBody"],
            "additionalProperties": false,
            "properties": {
                "ResultCode": code,
                "ResultMsg": message,
                "DataBody": items_schema(op.data)
            }
        });
    }
    let count = json!({"type": "integer", "minimum": 0});
    json!({
        "type": "object",
        "required": ["RequestId", "ResultCode", "ResultMsg", "DebugMsg", "IsEncrypt", "DataCount", "PageSize", "PageIndex", "DataBody", "EncDataBody"],
        "additionalProperties": false,
        "properties": {
            "RequestId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "ResultCode": code,
            "ResultMsg": message,
            "DebugMsg": {"const": ""},
            "IsEncrypt": {"const": 0},
            "DataCount": count,
            "PageSize": count,
            "PageIndex": {"type": "integer", "enum": [0, 1]},
            "DataBody": items_schema(op.data),
            "EncDataBody": {"const": ""}
        }
    })
}

/// The example answer: the envelope the server builds for the example's
/// success (a fixed RequestId, so that the document is the same each time).
fn example_answer(op: &Operation) -> Value {
    let body = match serde_json::from_str(op.example.0) {
        Ok(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let answer = super::api::Answer::Ok {
        body,
        message: op.example.1.to_owned(),
    };
    if op.b {
        return answer.short_envelope();
    }
    let mut envelope = answer.envelope();
    envelope["RequestId"] = json!("9f0c2a51d1b84c7e8e2f6a3b5c7d9e01");
    envelope
}

/// What a client does next with an answer (OpenAPI links, which
/// schemathesis's stateful phase follows): a number bound or listed is
/// queried, called through and released by the same user.
fn links(op: &Operation, method: &str) -> Option<Value> {
    let a = |name: &str| format!("{BASE_A}/{name}");
    let user = |p: &str| {
        if method == "get" {
            format!("$request.query.{p}")
        } else {
            format!("$request.body#/{p}")
        }
    };
    let to = |target: &str, params: Value| json!({"operationRef": format!("#/paths/{}/get", a(target).replace('~', "~0").replace('/', "~1")), "parameters": params});
    let (user_param, number) = match op.name {
        "BindAxNumber" | "BindAxNumberByUserPhone" => ("userid", "$response.body#/DataBody/0"),
        "QueryAgentNumbers" => ("userid", "$response.body#/DataBody/0/ax_number"),
        "GetCallNumber" => ("userid", "$response.body#/DataBody/0/phone"),
        _ => return None,
    };
    Some(json!({
        "QueryAgentNumbers": to("QueryAgentNumbers", json!({"userid": user(user_param)})),
        "QueryUserAxs": to("QueryUserAxs", json!({"userid": user(user_param)})),
        "ReleaseTelX": to("ReleaseTelX", json!({"userId": user(user_param), "private_number": number})),
    }))
}

fn text(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

fn empty(description: &str) -> Value {
    json!({"description": description})
}

/// Statuses the HTTP layer answers before any handler: a body over the
/// limit, a request not complete in time, a URI or header block too large.
fn transport_responses(r: &mut Map<String, Value>, body_limit: usize) {
    r.insert(
        "408".into(),
        text(
            "The request (its body included) was not complete within [http] request_timeout_secs.",
        ),
    );
    r.insert(
        "413".into(),
        text(&format!("The body is larger than {body_limit} bytes.")),
    );
    r.insert(
        "414".into(),
        empty("The request line is too long (hyper's limit); the connection is closed."),
    );
    r.insert(
        "431".into(),
        empty("The header block is too large (hyper's limit); the connection is closed."),
    );
}

/// The HTTP API's OpenAPI 3.1 document, for the settings it runs with.
pub fn document(settings: &Settings) -> Value {
    let platform = &settings.platform;
    let basic = !platform.password.expose().is_empty();
    let bearer = !platform.bearer_token.expose().is_empty();
    let mut security = Vec::new();
    if basic {
        security.push(json!({"basic": []}));
    }
    if bearer {
        security.push(json!({"bearer": []}));
    }
    let mut paths = Map::new();
    for op in OPERATIONS {
        let base = if op.b { BASE_B } else { BASE_A };
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut parameters = Vec::new();
        let mut example_query = Map::new();
        for p in op.params {
            let leniency = "the name matches in any case; the value is trimmed of whitespace; also accepted in a form or JSON body";
            let empty = match p.need {
                Required => "required: absent or empty is 缺少参数[name]",
                Optional => "absent or empty: the default",
                Filter => "absent: no filter; given empty: refused",
            };
            let mut schema = text_schema(p.kind, p.need);
            schema["example"] = json!(p.example);
            let mut member = json_member_schema(p.kind, p.need);
            member["description"] = json!(p.description);
            properties.insert(p.name.to_owned(), member);
            if p.need == Required {
                required.push(p.name);
            }
            example_query.insert(p.name.to_owned(), json!(p.example));
            parameters.push(json!({
                "name": p.name,
                "in": "query",
                "required": p.need == Required,
                "description": format!("{} ({empty}; {leniency})", p.description),
                "schema": schema,
            }));
        }
        let form_properties: Map<String, Value> = op
            .params
            .iter()
            .map(|p| (p.name.to_owned(), text_schema(p.kind, p.need)))
            .collect();
        let answer_ref = format!("#/components/schemas/{}Answer", op.name);
        let answer_content = |example: Option<Value>| {
            let mut media = json!({"schema": {"$ref": answer_ref}});
            if let Some(e) = example {
                media["example"] = e;
            }
            json!({"application/json": media})
        };
        let mut responses = Map::new();
        let ok = json!({
            "description": "The seed's envelope, whatever the outcome: ResultCode 2000 with DataBody on success, 5000 with the reason in ResultMsg when refused (a refused request changes nothing).",
            "content": answer_content(Some(example_answer(op)))
        });
        responses.insert("200".into(), ok);
        if basic || bearer {
            responses.insert(
                "401".into(),
                json!({
                    "description": "The request's credentials are missing or wrong: ResultCode 5000, ResultMsg 未授权: missing or wrong credentials; WWW-Authenticate names the schemes configured.",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    "content": answer_content(None)
                }),
            );
        }
        transport_responses(&mut responses, platform.max_body_bytes);
        let operation = |method: &str| {
            let mut o = json!({
                "operationId": format!("{}{}", op.name, if method == "get" { "" } else { "Post" }),
                "summary": op.summary,
                "tags": [if op.b { "B" } else { "A" }],
                "responses": responses,
            });
            if !security.is_empty() {
                o["security"] = json!(security);
            }
            if let Some(links) = links(op, method) {
                o["responses"]["200"]["links"] = links;
            }
            if method == "get" {
                o["parameters"] = json!(parameters);
            } else {
                o["requestBody"] = json!({
                    "required": false,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": {
                            "type": "object", "properties": form_properties, "required": required
                        }},
                        "application/json": {
                            "schema": {"type": "object", "properties": properties, "required": required},
                            "example": example_query
                        }
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
    let mut schemas = Map::new();
    for op in OPERATIONS {
        schemas.insert(format!("{}Answer", op.name), answer_schema(op));
    }
    schemas.insert(
        "PrivacyNumber".into(),
        json!({"type": "string", "pattern": "^1[679][0-9]{9}$", "description": "a privacy number X, normalized"}),
    );
    schemas.insert(
        "AgentNumber".into(),
        json!({
            "type": "object",
            "description": "One of the user's numbers, with the seed's fields.",
            "additionalProperties": false,
            "required": ["bindState", "numberState", "plateformid", "platform_name", "userId", "userName", "tuserName", "tuserId", "pool_id", "ax_numA", "ax_number", "ax_subid"],
            "properties": {
                "bindState": {"type": "string", "enum": ["未绑定", "已绑定", "绑定中", "故障绑定", "未知"], "description": "bind state label (docs/platform-api.md)"},
                "numberState": {"type": "string", "enum": ["正常", "停用", "故障", "回收", "未知"]},
                "plateformid": {"type": "integer", "minimum": 0},
                "platform_name": {"type": "string"},
                "userId": {"type": "integer", "minimum": 1},
                "userName": {"const": ""},
                "tuserName": {"const": ""},
                "tuserId": {"const": 0},
                "pool_id": {"type": "integer", "minimum": 0},
                "ax_numA": {"type": "string", "description": "A, masked (138****0001), or empty"},
                "ax_number": {"$ref": "#/components/schemas/PrivacyNumber"},
                "ax_subid": {"type": "string", "description": "the carrier's subscription id of the binding, or empty"}
            }
        }),
    );
    schemas.insert(
        "UserAx".into(),
        json!({
            "type": "object",
            "required": ["xNumber", "bindType"],
            "properties": {
                "xNumber": {"$ref": "#/components/schemas/PrivacyNumber"},
                "bindType": {"type": "integer", "enum": [0, 1], "description": "0 the AX number, 1 an XB binding's"}
            }
        }),
    );
    schemas.insert(
        "CallNumber".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["phone", "callbackId"],
            "properties": {
                "phone": {"$ref": "#/components/schemas/PrivacyNumber"},
                "callbackId": {"type": "integer", "minimum": 0, "maximum": ID_MAX}
            }
        }),
    );
    endpoints(settings, &mut paths, &mut schemas);
    let mut schemes = Map::new();
    if basic {
        schemes.insert("basic".into(), json!({"type": "http", "scheme": "basic", "description": "[platform] username and password"}));
    }
    if bearer {
        schemes.insert(
            "bearer".into(),
            json!({"type": "http", "scheme": "bearer", "description": "[platform] bearer_token"}),
        );
    }
    if !settings.mapping.password.expose().is_empty() {
        schemes.insert("mappingBasic".into(), json!({"type": "http", "scheme": "basic", "description": "[mapping] username and password"}));
    }
    let mut components = json!({"schemas": schemas});
    if !schemes.is_empty() {
        components["securitySchemes"] = Value::Object(schemes);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "axn-worker HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The privacy-number platform's binding API (the seed's PrivateNumberApiController and PrivateNumber_ax) over the same Redis state the worker keeps, the contact center's number-mapping API, and the health endpoints. Every binding operation answers HTTP 200 with the seed's envelope; the outcome is ResultCode. Methods other than GET and POST on an operation answer 405 with Allow: GET, POST. docs/platform-api.md has the state machines and every failure message."
        },
        "tags": [
            {"name": "A", "description": BASE_A},
            {"name": "B", "description": BASE_B},
            {"name": "mapping", "description": "the contact center's number mapping (docs/mapping.md)"},
            {"name": "health", "description": "probes and metrics"}
        ],
        "paths": paths,
        "components": components
    })
}

/// The number-mapping API (when it is on) and the health endpoints.
fn endpoints(
    settings: &Settings,
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
) {
    if !settings.mapping.password.expose().is_empty() {
        let mut responses = Map::new();
        let answer =
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/MappingAnswer"}}});
        responses.insert("200".into(), json!({
            "description": "Code 0 and every entry converted.",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/MappingAnswer"},
                "example": {"Code": 0, "Results": [{"Key": "13988888888", "Value": "139kqzvbnr"}]}
            }}
        }));
        responses.insert("400".into(), json!({"description": "A bad body or entry: Code 1001-1006 with a Message, no Results (docs/mapping.md).", "content": answer}));
        responses.insert("401".into(), json!({"description": "Missing or wrong credentials: Code 1401.", "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}, "content": answer}));
        responses.insert("503".into(), json!({"description": "Redis does not answer: Code 1503 (safe to retry).", "content": answer}));
        transport_responses(&mut responses, settings.mapping.max_body_bytes);
        responses.insert("413".into(), json!({"description": format!("The body is larger than {} bytes: Code 1003.", settings.mapping.max_body_bytes), "content": answer}));
        paths.insert("/number-mapping".into(), json!({"post": {
            "operationId": "NumberMapping",
            "summary": "Customers' numbers to ids agents see (PhoneToUID), and back (UIDToPhone).",
            "tags": ["mapping"],
            "security": [{"mappingBasic": []}],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/MappingRequest"},
                "example": {"Numbers": ["13988888888", "+86 137-8888-8888"], "Mode": "PhoneToUID"}
            }}},
            "responses": responses
        }}));
        schemas.insert("MappingRequest".into(), json!({
            "type": "object",
            "required": ["Numbers", "Mode"],
            "properties": {
                "Numbers": {"type": "array", "minItems": 1, "maxItems": settings.mapping.max_batch, "items": {"type": "string"}},
                "Mode": {"type": "string", "enum": ["PhoneToUID", "UIDToPhone"]}
            },
            // What each mode accepts as an entry (docs/mapping.md).
            "oneOf": [
                {"properties": {"Mode": {"const": "PhoneToUID"}, "Numbers": {"items": {"pattern": mapping_phone()}}}},
                {"properties": {"Mode": {"const": "UIDToPhone"}, "Numbers": {"items": {"pattern": mapping_id()}}}}
            ]
        }));
        schemas.insert("MappingAnswer".into(), json!({
            "type": "object",
            "required": ["Code", "Results"],
            "properties": {
                "Code": {"type": "integer", "enum": [0, 1001, 1002, 1003, 1004, 1005, 1006, 1401, 1503]},
                "Message": {"type": "string"},
                "Results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["Key", "Value"],
                    "properties": {"Key": {"type": "string"}, "Value": {"type": "string"}}
                }}
            }
        }));
    }
    let readiness = json!({
        "type": "object",
        "required": ["ready", "broker", "redis", "stopping", "consuming", "missing_targets"],
        "properties": {
            "ready": {"type": "boolean"},
            "broker": {"type": "boolean"},
            "redis": {"type": "boolean"},
            "stopping": {"type": "boolean"},
            "consuming": {"type": "array", "items": {"type": "string"}},
            "missing_targets": {"type": "array", "items": {"type": "string"}},
            "broker_error": {"type": "string"}
        }
    });
    let api_readiness = json!({
        "type": "object",
        "required": ["ready", "redis", "stopping"],
        "properties": {"ready": {"type": "boolean"}, "redis": {"type": "boolean"}, "stopping": {"type": "boolean"}}
    });
    let get = |id: &str, summary: &str, responses: Value| json!({"get": {"operationId": id, "summary": summary, "tags": ["health"], "responses": responses}});
    let json_ref = |name: &str| json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}});
    paths.insert(
        "/healthz".into(),
        get(
            "Healthz",
            "Liveness: the process answers.",
            json!({"200": text("ok")}),
        ),
    );
    paths.insert("/readyz".into(), get("Readyz", "Readiness of the whole process (consumers and APIs).", json!({
        "200": {"description": "Ready.", "content": json_ref("Readiness")},
        "503": {"description": "Not ready; the fields say why.", "content": json_ref("Readiness")}
    })));
    paths.insert("/readyz/api".into(), get("ReadyzApi", "Readiness of the HTTP APIs: Redis answers and the process is not stopping, whatever the broker does.", json!({
        "200": {"description": "Ready.", "content": json_ref("ApiReadiness")},
        "503": {"description": "Not ready.", "content": json_ref("ApiReadiness")}
    })));
    paths.insert("/metrics".into(), get("Metrics", "Prometheus metrics: OpenMetrics when the Accept header asks for it, else the Prometheus text format.", json!({
        "200": {"description": "The metrics.", "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/openmetrics-text": {"schema": {"type": "string"}}
        }}
    })));
    paths.insert("/openapi.json".into(), get("OpenApi", "This document.", json!({
        "200": {"description": "The OpenAPI 3.1 document.", "content": {"application/json": {"schema": {"type": "object"}}}}
    })));
    schemas.insert("Readiness".into(), readiness);
    schemas.insert("ApiReadiness".into(), api_readiness);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::api::Params;
    use proptest::prelude::*;

    /// The compiled text schema of (kind, need), compiled once per test
    /// thread (the property tests ask thousands of times).
    fn validator(kind: Kind, need: Need) -> std::rc::Rc<jsonschema::Validator> {
        thread_local! {
            static CACHE: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<jsonschema::Validator>>> =
                Default::default();
        }
        CACHE.with(|c| {
            c.borrow_mut()
                .entry(format!("{kind:?}{need:?}"))
                .or_insert_with(|| {
                    std::rc::Rc::new(jsonschema::validator_for(&text_schema(kind, need)).unwrap())
                })
                .clone()
        })
    }

    /// What the parser makes of `v` as the value of a parameter of `kind`.
    fn parses(kind: Kind, need: Need, v: &str) -> bool {
        let p = Params::from_pairs([("x".to_owned(), v.to_owned())]);
        match (kind, need) {
            (_, Filter) if p.filter("x").is_err() => false,
            (_, Optional) if !p.has("x") => true,
            (Id, _) => p.id("x").is_ok(),
            (Uint(max), _) => p.int("x", max).is_ok(),
            (Virtual, _) => p.virtual_number("x").is_ok(),
            (Mobile, _) => p.real_mobile("x").is_ok(),
            (Text, _) => true,
        }
    }

    fn agree(kind: Kind, need: Need, v: &str) {
        agree_with(&validator(kind, need), kind, need, v);
    }

    fn agree_with(schema: &jsonschema::Validator, kind: Kind, need: Need, v: &str) {
        assert_eq!(
            schema.is_valid(&json!(v)),
            parses(kind, need, v),
            "{kind:?} {need:?} {v:?}: schema vs parser"
        );
    }

    #[test]
    fn the_listed_cases_agree() {
        let ws = ["", " ", "\t", "\u{3000}", "\u{a0}", "\u{2028}", "\u{85}"];
        let values = [
            "",
            "0",
            "00",
            "1",
            "01",
            "051218",
            "2147483647",
            "2147483648",
            "18446744073709551615",
            "-1",
            "+1",
            "1.0",
            "1e3",
            "１２",
            "abc",
            "13800000001",
            "+86 138-0000-0001",
            "0086 13800000001",
            "8613800000001",
            "17100000001",
            "+86 171 0000 0001",
            "1710000000",
            "12500000001",
            "19000000001",
            "16500000001",
            "138 0000 0001 ",
            "- 13800000001",
            "-\u{3000}13800000001",
            "\u{3000}-13800000001",
            "138*****001",
            "+13800000001",
            "86 86 13800000001",
            "3",
            "4",
        ];
        // Every kind and need the table uses (free text is only optional).
        let mut kinds = vec![(Text, Optional)];
        for kind in [Id, Uint(3), Uint(ID_MAX), Uint(MAX_EXP), Virtual, Mobile] {
            for need in [Required, Optional, Filter] {
                kinds.push((kind, need));
            }
        }
        for (kind, need) in kinds {
            let schema = validator(kind, need);
            for w in ws {
                for v in values {
                    agree_with(&schema, kind, need, &format!("{w}{v}{w}"));
                }
            }
        }
        for op in OPERATIONS {
            for p in op.params {
                assert!(
                    !matches!(p.kind, Text) || p.need == Optional,
                    "{}: free text is optional",
                    p.name
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn schemas_and_parser_agree_on_generated_values(
            v in "[ \\-+0-9\u{3000}\t*a]{0,16}",
            kind in prop::sample::select(vec![Id, Uint(3), Uint(ID_MAX), Virtual, Mobile]),
            need in prop::sample::select(vec![Required, Optional, Filter]),
        ) {
            agree(kind, need, &v);
        }

        #[test]
        fn numbers_written_any_way_agree(
            second in prop::sample::select(vec!['3', '4', '5', '6', '7', '8', '9', '0', '2']),
            rest in "[0-9]{9}",
            prefix in prop::sample::select(vec!["", "+86", "0086", "86", "+", "8", "0"]),
            sep in prop::sample::select(vec!["", " ", "-", " - ", "\u{3000}"]),
        ) {
            let digits = format!("{prefix}1{second}{rest}");
            let written: String = digits.chars().map(|c| format!("{c}{sep}")).collect();
            for kind in [Virtual, Mobile] {
                agree(kind, Required, &written);
            }
        }
    }

    #[test]
    fn mapping_patterns_are_the_parsers() {
        let phone =
            jsonschema::validator_for(&json!({"type": "string", "pattern": mapping_phone()}))
                .unwrap();
        let id =
            jsonschema::validator_for(&json!({"type": "string", "pattern": mapping_id()})).unwrap();
        for v in [
            "",
            "1",
            "12345",
            "1234",
            "+86 138-0000-0001",
            "+8613800000001",
            "+86123",
            "0086 13800000001",
            "8613800000001",
            "13800000001",
            "123456789012345678901",
            "12345678901234567890",
            "138****0001",
            " 13800000001 ",
            "\t13800000001",
            "１３８00000001",
            "+8612800000001",
            "--1-2-3-4-5--",
            "+1 555 0100",
        ] {
            assert_eq!(
                phone.is_valid(&json!(v)),
                crate::phone::normalize(v).is_ok(),
                "{v:?}"
            );
        }
        for v in [
            "139kqzvbnr",
            "139kqzvbn",
            "139Kqzvbnr",
            "13akqzvbnr",
            "139kqzvbnrx",
            " 139kqzvbnr",
        ] {
            assert_eq!(
                id.is_valid(&json!(v)),
                crate::mapping::is_id(v.trim()),
                "{v:?}"
            );
        }
    }

    #[test]
    fn the_document_names_the_security_configured() {
        let mut s = Settings::defaults().unwrap();
        let open = document(&s);
        assert!(open["components"].get("securitySchemes").is_none());
        assert!(
            open["paths"]
                .as_object()
                .unwrap()
                .values()
                .all(|p| p["get"].get("security").is_none())
        );
        s.platform.password = crate::config::Secret::new("p");
        s.platform.bearer_token = crate::config::Secret::new("t");
        let closed = document(&s);
        let op = &closed["paths"][format!("{BASE_B}/BindAxByplatform")]["get"];
        assert_eq!(op["security"], json!([{"basic": []}, {"bearer": []}]));
        assert!(op["responses"].get("401").is_some());
    }
}
