"""Developers › API reference: the payments API's OpenAPI document (app/api/openapi.py) as a page."""
from flask import render_template

from app.accounts.permissions import Action
from app.api.openapi import build_document
from app.dashboard import bp
from app.dashboard.context import merchant_view


def _type(schema: dict, components: dict) -> str:
    """A short human description of a JSON schema ("integer 1..99999999", "list of SplitPart", ...)."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s, components) for s in schema["anyOf"])
    if "const" in schema:
        return f'"{schema["const"]}"'
    if "enum" in schema:
        values = schema["enum"]
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        return f"one of {shown}"
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = " or ".join(k for k in kind)
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), components)}"
    bounds = []
    if "minimum" in schema or "maximum" in schema:
        bounds.append(f"{schema.get('minimum', '')}..{schema.get('maximum', '')}")
    if "maxLength" in schema:
        bounds.append(f"at most {schema['maxLength']} characters")
    if schema.get("format"):
        bounds.append(schema["format"])
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _fields(schema: dict, components: dict) -> list[dict]:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", ()))
    return [{"name": name, "type": _type(prop, components), "required": name in required,
             "description": prop.get("description", "")}
            for name, prop in schema.get("properties", {}).items()]


def reference() -> dict:
    """The document shaped for the template: operations in order, and the object schemas."""
    document = build_document()
    components = document["components"]["schemas"]
    operations = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            operations.append({
                "id": operation["operationId"], "method": method.upper(), "path": path,
                "summary": operation["summary"],
                "parameters": [{"name": p["name"], "in": p["in"], "type": _type(p["schema"], components),
                                "required": p.get("required", False), "description": p.get("description", "")}
                               for p in operation.get("parameters", ())],
                "body": _fields(body, components) if body else [],
                "responses": [(status, response["description"]) for status, response in operation["responses"].items()],
            })
    objects = [{"name": name, "fields": _fields(schema, components)} for name, schema in components.items()
               if schema.get("type") == "object" and not name.endswith("List")]
    return {"info": document["info"], "operations": operations, "objects": objects}


@bp.route("/<merchant_id>/<mode>/developers/api-reference")
@merchant_view(Action.VIEW)
def api_reference():
    return render_template("dashboard/developers/api_reference.html", ref=reference())
