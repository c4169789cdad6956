"""Structured output: generation constrained by a JSON schema or a GBNF grammar.

Every output must parse as JSON and validate against its schema with a real JSON-schema
validator (the `jsonschema` package), for a set of schemas that covers objects, arrays, enums,
numbers, nested values and required fields. The model is the small default one under greedy
decoding, so what is tested is the constraint, not the model's knowledge.

Run from the repository root:  python3 -m pytest -q bindings/python/tests
"""

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(HERE.parent))

import lamina  # noqa: E402

jsonschema = pytest.importorskip("jsonschema", reason="the JSON-schema validator (pip install jsonschema)")

SESSION_KW = dict(n_ctx=1024, n_threads=2)
# Room for every schema below to finish on its own: each bounds its strings and arrays.
MAX_TOKENS = 200

S = {"type": "string", "maxLength": 24}
SCHEMAS = [
    ("string", S),
    ("integer", {"type": "integer"}),
    ("number", {"type": "number"}),
    ("boolean", {"type": "boolean"}),
    ("null", {"type": "null"}),
    ("enum of strings", {"enum": ["red", "green", "blue"]}),
    ("enum of mixed values", {"enum": [1, "two", None, True]}),
    ("const", {"const": "fixed"}),
    ("integer range", {"type": "integer", "minimum": 10, "maximum": 99}),
    ("exclusive integer range", {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 5}),
    ("string of a pattern", {"type": "string", "pattern": "^[A-Z][a-z]{2,8}$"}),
    ("string length", {"type": "string", "minLength": 3, "maxLength": 6}),
    ("array of integers", {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 4}),
    ("array of enums", {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}),
    ("tuple", {"type": "array", "prefixItems": [{"type": "integer"}, S]}),
    (
        "object, all required",
        {"type": "object", "properties": {"name": S, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
         "required": ["name", "age"], "additionalProperties": False},
    ),
    (
        "object, optional fields",
        {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "integer"}, "c": S},
         "required": ["a"], "additionalProperties": False},
    ),
    (
        "nested objects",
        {"type": "object", "properties": {
            "person": {"type": "object", "properties": {"name": S, "address": {
                "type": "object", "properties": {"city": S, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["city", "zip"], "additionalProperties": False}},
                "required": ["name", "address"], "additionalProperties": False}},
         "required": ["person"], "additionalProperties": False},
    ),
    (
        "array of objects",
        {"type": "array", "maxItems": 3, "items": {
            "type": "object", "properties": {"id": {"type": "integer"}, "done": {"type": "boolean"}},
            "required": ["id", "done"], "additionalProperties": False}},
    ),
    ("anyOf", {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}),
    ("oneOf of objects", {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "dog"}, "barks": {"type": "boolean"}},
         "required": ["kind", "barks"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer", "minimum": 1, "maximum": 9}},
         "required": ["kind", "lives"], "additionalProperties": False}]}),
    (
        "$ref to $defs",
        {"$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                             "required": ["x", "y"], "additionalProperties": False}},
         "type": "object", "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
         "required": ["from", "to"], "additionalProperties": False},
    ),
    ("nullable", {"type": ["string", "null"], "maxLength": 10}),
    ("date format", {"type": "string", "format": "date"}),
    (
        "object of arrays and enums",
        {"type": "object", "properties": {
            "tags": {"type": "array", "items": {"enum": ["new", "old", "hot"]}, "uniqueItems": False, "maxItems": 3},
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
            "weight": {"type": "number"},
            "level": {"enum": ["low", "mid", "high"]}},
         "required": ["tags", "score", "weight", "level"], "additionalProperties": False},
    ),
]


@pytest.fixture(scope="module")
def session(model):
    with model.session(**SESSION_KW) as s:
        yield s


def test_at_least_twenty_schemas():
    assert len(SCHEMAS) >= 20


@pytest.mark.parametrize("name,schema", SCHEMAS, ids=[n for n, _ in SCHEMAS])
def test_every_output_validates(session, name, schema):
    prompt = "Here is a JSON value for the schema {}:\n".format(json.dumps(schema))
    g = session.generate(prompt, json_schema=schema, max_tokens=MAX_TOKENS)
    assert g.stop_reason == "end_of_generation", "{}: cut short ({}): {!r}".format(name, g.stop_reason, g.text)
    value = json.loads(g.text)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


def test_a_schema_as_json_text_and_as_dict_give_the_same_output(session):
    schema = SCHEMAS[15][1]
    a = session.generate("Person:", json_schema=schema, max_tokens=MAX_TOKENS).text
    b = session.generate("Person:", json_schema=json.dumps(schema), max_tokens=MAX_TOKENS).text
    assert a == b


def test_sampled_output_validates_too(session):
    schema = SCHEMAS[24][1]
    for seed in range(3):
        g = session.generate("Item:", json_schema=schema, temperature=0.9, seed=seed, max_tokens=MAX_TOKENS)
        assert g.stop_reason == "end_of_generation", g.text
        jsonschema.validate(json.loads(g.text), schema)


def test_a_gbnf_grammar(session):
    g = session.generate("Is Paris in France? Answer:", grammar='root ::= ("yes" | "no") "."', max_tokens=10)
    assert g.text in ("yes.", "no."), g.text
    g = session.generate("Count:", grammar="root ::= [0-9]{3}", max_tokens=10)
    assert len(g.text) == 3 and g.text.isdigit(), g.text


def test_structured_chat(session):
    schema = {"type": "object", "properties": {"answer": S}, "required": ["answer"], "additionalProperties": False}
    g = session.chat("What is the capital of France? Reply in JSON.", json_schema=schema, max_tokens=MAX_TOKENS)
    jsonschema.validate(json.loads(g.text), schema)
    session.reset()


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(json_schema={"type": "foo"}), "json_schema"),
        (dict(json_schema='{"type": '), "json_schema"),
        (dict(json_schema={"$ref": "#/$defs/missing"}), "json_schema"),
        # Keywords llama.cpp's converter would leave unenforced are refused, not ignored.
        (dict(json_schema={"type": "number", "maximum": 1}), "json_schema"),
        (dict(json_schema={"type": "array", "items": {"type": "integer", "multipleOf": 2}}), "json_schema"),
        (dict(json_schema={"type": "string", "format": "email"}), "json_schema"),
        # What the converter itself cannot handle comes with its message.
        (dict(json_schema={"type": "array", "prefixItems": [{"type": "integer"}], "items": False}), "json_schema"),
        (dict(grammar="root ::= undefined-rule"), "grammar"),
        (dict(grammar='start ::= "x"'), "grammar"),
        (dict(grammar=""), "grammar"),
        (dict(grammar='root ::= "a"', json_schema={"type": "string"}), "sampling"),
    ],
)
def test_bad_constraints_are_clear_errors(session, kwargs, field):
    with pytest.raises(lamina.InvalidArgumentError) as excinfo:
        session.generate("x", max_tokens=5, **kwargs)
    assert "`{}`".format(field) in str(excinfo.value), str(excinfo.value)
    # The session keeps working, and free text is free again.
    assert session.generate("The capital of France is", max_tokens=4).text.strip()
