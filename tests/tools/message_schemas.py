"""A second validator of the AsyncAPI document's message schemas: Python's
`jsonschema` (Draft 2020-12, Python's own regex dialect), on the cases the
worker's parser judged (tests/api/asyncapi.rs writes them). Prints every
case where the schema and the parser disagree; exit 1 if any.

    python message_schemas.py ASYNCAPI.json CASES.jsonl
"""

import json
import sys

from jsonschema import Draft202012Validator

doc = json.load(open(sys.argv[1], encoding="utf-8"))
validators = {}


def validator(message):
    if message not in validators:
        root = dict(doc)
        root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        root["$ref"] = f"#/components/messages/{message}/payload"
        validators[message] = Draft202012Validator(root)
    return validators[message]


differ = 0
cases = 0
for line in open(sys.argv[2], encoding="utf-8"):
    case = json.loads(line)
    cases += 1
    body = json.loads(case["body"])
    by_schema = validator(case["message"]).is_valid(body)
    if by_schema != case["parser"]:
        differ += 1
        print(json.dumps({"message": case["message"], "body": case["body"],
                          "schema": by_schema, "parser": case["parser"]}, ensure_ascii=False))
print(f"{cases} cases, {differ} differ")
sys.exit(1 if differ else 0)
