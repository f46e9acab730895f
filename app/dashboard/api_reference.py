"""Developers › API reference: the /v1 API's OpenAPI document (app/api/openapi.py) as a page.

Each operation shows its parameters, its request and response examples, and the request as a curl
command with a test key placeholder, which static/developers.js copies to the clipboard.
"""
import json
import re
import shlex

from flask import current_app, render_template, request
from markupsafe import Markup, escape

from app.accounts.permissions import Action
from app.api.openapi import build_document
from app.dashboard import bp
from app.dashboard.context import merchant_view

# What the curl commands authenticate with: the merchant pastes their own test secret key over it
# (Developers › API keys). Always a test key: copied commands should never move real money.
KEY_PLACEHOLDER = "sk_test_..."
# Enum values listed inline up to this many; longer lists (currencies, event types) fold into a <details>.
INLINE_VALUES = 8


def inline_code(text: str | None) -> Markup:
    """The text, HTML-escaped, with `backticked` spans as <code>."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text or ""))))


def _values(values: list) -> tuple[list[str], bool]:
    """Enum values to show, and whether their case does not matter (each is listed in both cases)."""
    if values and all(isinstance(v, str) for v in values):
        upper = {v.upper() for v in values}
        if len(values) == 2 * len(upper) and upper | {v.lower() for v in upper} == set(values):
            return sorted(upper), True
    return [v if isinstance(v, str) else json.dumps(v) for v in values], False


def _described(text: str, values: list[str] | None = None, any_case: bool = False) -> dict:
    values = values or []
    return {"text": text, "values": values, "any_case": any_case, "fold": len(values) > INLINE_VALUES}


def _type(schema: dict) -> dict:
    """A schema described for a person: ``text`` ("integer, 1 to 99999999", "list of SplitPart", ...),
    ``values`` (every value of an enum, ``any_case`` when either case is accepted) and ``fold`` (too many
    to show inline)."""
    if "$ref" in schema:
        return _described(schema["$ref"].rsplit("/", 1)[-1])
    if "anyOf" in schema:
        parts = [_type(s) for s in schema["anyOf"]]
        return _described(" or ".join(p["text"] for p in parts), [v for p in parts for v in p["values"]])
    if "const" in schema:
        return _described(json.dumps(schema["const"]))
    if "enum" in schema:
        values, any_case = _values(schema["enum"])
        return _described("one of", values, any_case)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        item = _type(schema.get("items", {}))
        return {**item, "text": f"list of {item['text']}"}
    bounds = []
    if "minimum" in schema and "maximum" in schema:
        bounds.append(f"{schema['minimum']} to {schema['maximum']}")
    elif "maximum" in schema:
        bounds.append(f"at most {schema['maximum']}")
    elif "minimum" in schema:
        bounds.append(f"at least {schema['minimum']}")
    if "maxLength" in schema:
        bounds.append(f"at most {schema['maxLength']} characters")
    if schema.get("format"):
        bounds.append(schema["format"])
    if schema.get("pattern"):
        bounds.append(f"matching {schema['pattern']}")
    return _described(kind + (f", {', '.join(bounds)}" if bounds else ""))


def _fields(schema: dict, components: dict, prefix: str = "") -> list[dict]:
    """One row per field; the fields of a list of objects follow it as ``split[i][seller]``."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        full = f"{prefix}[{name}]" if prefix else name
        rows.append({"name": full, "type": _type(prop), "required": name in required,
                     "description": inline_code(prop.get("description"))})
        items = prop.get("items", {})
        if prop.get("type") == "array" and "properties" in items:
            rows += _fields(items, components, f"{full}[i]")
    return rows


def _parameters(parameters: list[dict]) -> list[dict]:
    """Rows of the parameters table; an exploded query object (the paging parameters) shows as its fields."""
    rows = []
    for parameter in parameters:
        schema = parameter["schema"]
        if parameter.get("explode") and schema.get("type") == "object":
            exclusive = set(schema.get("not", {}).get("required", ()))
            for name, prop in schema["properties"].items():
                note = " ".join(filter(None, [prop.get("description"),
                                              schema.get("description") if name in exclusive else None]))
                rows.append({"name": name, "in": parameter["in"], "type": _type(prop), "required": False,
                             "description": inline_code(note)})
        else:
            rows.append({"name": parameter["name"], "in": parameter["in"], "type": _type(schema),
                         "required": parameter.get("required", False),
                         "description": inline_code(parameter.get("description"))})
    return rows


def form_fields(value, prefix: str = "") -> list[tuple[str, str]]:
    """A JSON body as form fields in the API's bracket syntax (app/api/params.py: ``metadata[order]``,
    ``line_items[0][name]``, ``enabled_events[]``)."""
    if isinstance(value, dict):
        return [field for key, item in value.items()
                for field in form_fields(item, f"{prefix}[{key}]" if prefix else key)]
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return [field for item in value for field in form_fields(item, f"{prefix}[]")]
        return [field for index, item in enumerate(value) for field in form_fields(item, f"{prefix}[{index}]")]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]


def curl_command(base_url: str, method: str, path: str, parameters: list[dict], body: dict | None,
                 public: bool = False, upload: bool = False, download: bool = False) -> str:
    """The operation's example request as a curl command, one option per line. ``upload``: the body is
    ``multipart/form-data`` (``-F``, its file fields given as the example's file name); ``download``: the
    answer is a file, saved under the name the server gives it."""
    for parameter in parameters:
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", parameter["example"])
    fields = [field for p in parameters if p["in"] == "query" and "example" in p
              for field in (form_fields(p["example"]) if p.get("explode") else [(p["name"], str(p["example"]))])]
    body_fields = form_fields(body or {})
    if not upload:
        fields, body_fields = fields + body_fields, []
    # curl sends -d fields as a POST body, or with -G in a GET's query string; other cases name the method.
    if method == "GET":
        verb = "-G " if fields else ""
    else:
        verb = "" if method == "POST" and (fields or body_fields) else f"-X {method} "
    lines = [f"curl {verb}{'-OJ ' if download else ''}{shlex.quote(base_url.rstrip('/') + path)}"]
    if not public:
        lines.append(f"-u {KEY_PLACEHOLDER}:")
    lines += [f"-H {shlex.quote(p['name'] + ': ' + str(p['example']))}" for p in parameters
              if p["in"] == "header" and "example" in p]
    lines += [f"-d {shlex.quote(f'{name}={value}')}" for name, value in fields]
    lines += [f"-F {shlex.quote(f'{name}={value}')}" for name, value in body_fields]
    return " \\\n  ".join(lines)


def _file_fields(schema: dict) -> set[str]:
    return {name for name, prop in schema.get("properties", {}).items() if prop.get("format") == "binary"}


def _json_example(response: dict) -> str | None:
    example = response["content"]["application/json"].get("example")
    return None if example is None else json.dumps(example, indent=2)


def _download_example(response: dict) -> str:
    """What a file download answers, for a reference: its content types and headers (no JSON to show)."""
    lines = [f"Content-Type: {' or '.join(response['content'])}"]
    lines += [f"{name}: {header['example']}" for name, header in response.get("headers", {}).items()]
    return "\n".join(lines + ["", "(the file's bytes)"])


def reference(base_url: str) -> dict:
    """The document shaped for the template: operations in order, and the object schemas."""
    document = build_document()
    components = document["components"]["schemas"]
    operations = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            upload = "multipart/form-data" in content
            body = content.get("multipart/form-data") or content.get("application/json", {})
            answer = operation["responses"]["200"]
            download = "application/json" not in answer["content"]
            parameters = operation.get("parameters", ())
            example = body.get("example")
            if upload:  # a file field of the example is the name of the file to send (curl's -F name=@file)
                example = {name: f"@{value}" if name in _file_fields(body["schema"]) else value
                           for name, value in example.items()}
            operations.append({
                "id": operation["operationId"], "method": method.upper(), "path": path,
                "summary": inline_code(operation["summary"]),
                "description": inline_code(operation.get("description")),
                "parameters": _parameters(parameters),
                "body": _fields(body["schema"], components) if body else [],
                "body_format": "multipart/form-data" if upload else "JSON or form-encoded",
                "body_note": inline_code(body.get("schema", {}).get("description")) if body else "",
                "request_example": json.dumps(example, indent=2) if example is not None and not upload else None,
                "response_example": _download_example(answer) if download else _json_example(answer),
                "curl": curl_command(base_url, method.upper(), path, parameters, example,
                                     public=operation.get("security") == [], upload=upload, download=download),
                "responses": [(status, inline_code(response["description"]))
                              for status, response in operation["responses"].items()],
            })
    objects = [{"name": name, "fields": _fields(schema, components)} for name, schema in components.items()
               if schema.get("type") == "object" and not name.endswith("List") and name != "OpenApiDocument"]
    return {"info": {**document["info"], "description": inline_code(document["info"]["description"])},
            "operations": operations, "objects": objects}


@bp.route("/<merchant_id>/<mode>/developers/api-reference")
@merchant_view(Action.VIEW)
def api_reference():
    base_url = current_app.config.get("PUBLIC_BASE_URL") or request.host_url
    return render_template("dashboard/developers/api_reference.html", ref=reference(base_url),
                           key_placeholder=KEY_PLACEHOLDER)
