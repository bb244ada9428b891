"""A deterministic, minimal instance of a JSON schema.

When a chain step asks for structured output and no scripted rule answers,
the simulator still has to return JSON the step accepts, so runs complete
offline without scripting every step. The instance is minimal (only required
properties, `minItems` items) but readable ("simulated summary") and honours
the constraints chains actually use: enums, consts, string lengths and
formats, numeric ranges, local `$ref`s, and `anyOf`/`oneOf`/`allOf`.
"""

from __future__ import annotations

import math
import re
from typing import Any

_MAX_DEPTH = 32

_SCORE_NAME = re.compile(r"confidence|score|probability|certainty", re.IGNORECASE)

_FORMAT_EXAMPLES = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "sim@example.com",
    "idn-email": "sim@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/sim",
    "iri": "https://example.com/sim",
    "uri-reference": "https://example.com/sim",
    "url": "https://example.com/sim",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def minimal_instance(schema: Any, *, name: str = "value") -> Any:
    """An instance valid against `schema` (JSON Schema 2020-12 or draft 7)."""
    return _Generator(schema).generate(schema, name=name, variant=0, depth=0)


class _Generator:
    def __init__(self, root: Any) -> None:
        self._root = root

    def generate(self, schema: Any, *, name: str, variant: int, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            return None
        if schema is True or schema is None or schema == {}:
            return self._string({}, name=name, variant=variant)
        if not isinstance(schema, dict):
            return None
        schema = self._resolve(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][variant % len(schema["enum"])]
        if isinstance(schema.get("allOf"), list):
            return self.generate(
                self._merge_all_of(schema), name=name, variant=variant, depth=depth + 1
            )
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k != key}
                branch = self._pick_branch(branches, depth)
                return self.generate(
                    {**rest, **branch}, name=name, variant=variant, depth=depth + 1
                )

        kind = self._type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name=name, depth=depth)
        if kind in ("number", "integer"):
            return self._number(schema, name=name, integer=kind == "integer", variant=variant)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema, name=name, variant=variant)

    def _resolve(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        target: Any = self._root
        for part in ref.lstrip("#").split("/"):
            if part:
                target = target[part.replace("~1", "/").replace("~0", "~")]
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        resolved = {**target, **siblings} if isinstance(target, dict) else siblings
        return self._resolve(resolved, depth + 1) if depth < _MAX_DEPTH else resolved

    def _pick_branch(self, branches: list[Any], depth: int) -> dict[str, Any]:
        """The first branch that is not just `null`, so optional fields get a value."""
        dict_branches = [self._resolve(b, depth) for b in branches if isinstance(b, dict)]
        for branch in dict_branches:
            if branch.get("type") != "null":
                return branch
        return dict_branches[0] if dict_branches else {}

    def _merge_all_of(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if not isinstance(part, dict):
                continue
            part = self._resolve(part, 0)
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = sorted(set(merged.get("required", [])) | set(value))
                else:
                    merged.setdefault(key, value)
        return merged

    @staticmethod
    def _type(schema: dict[str, Any]) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            return non_null[0] if non_null else "null"
        if isinstance(kind, str):
            return kind
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            return "number"
        return "string"

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        names = list(schema.get("required") or [])
        min_properties = int(schema.get("minProperties", 0))
        for optional in properties:
            if len(names) >= min_properties:
                break
            if optional not in names:
                names.append(optional)
        result: dict[str, Any] = {}
        for key in names:
            sub = properties.get(key, extra if isinstance(extra, dict) else {})
            result[key] = self.generate(sub, name=key, variant=0, depth=depth + 1)
        return result

    def _array(self, schema: dict[str, Any], *, name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 7 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        count = int(schema.get("minItems", 0))
        contains = schema.get("contains")
        if contains is not None:
            count = max(count, 1)
        result: list[Any] = []
        for i in range(count):
            if i < len(prefix):
                sub = prefix[i]
            elif i == 0 and contains is not None:
                sub = contains
            else:
                sub = items if isinstance(items, dict) else {}
            # Variants make successive items differ, which `uniqueItems` needs.
            result.append(self.generate(sub, name=name, variant=i, depth=depth + 1))
        return result

    @staticmethod
    def _number(schema: dict[str, Any], *, name: str, integer: bool, variant: int) -> float | int:
        lo, lo_excl = schema.get("minimum"), False
        hi, hi_excl = schema.get("maximum"), False
        ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        # Draft 4 spells exclusivity as booleans next to minimum/maximum.
        if ex_lo is True:
            lo_excl = True
        elif _is_number(ex_lo) and (lo is None or ex_lo >= lo):
            lo, lo_excl = ex_lo, True
        if ex_hi is True:
            hi_excl = True
        elif _is_number(ex_hi) and (hi is None or ex_hi <= hi):
            hi, hi_excl = ex_hi, True

        def within(x: float) -> bool:
            if lo is not None and (x < lo or (lo_excl and x == lo)):
                return False
            return not (hi is not None and (x > hi or (hi_excl and x == hi)))

        step = schema.get("multipleOf")
        if not integer and _SCORE_NAME.search(name) and within(0.9) and step is None:
            return 0.9

        if lo is not None:
            if integer:
                value: float = math.floor(lo) + 1 if lo_excl else math.ceil(lo)
            elif lo_excl:
                value = (lo + hi) / 2 if hi is not None else lo + 1
            else:
                value = lo
        elif hi is not None:
            if within(0):
                value = 0
            elif integer:
                value = math.ceil(hi) - 1 if hi_excl else math.floor(hi)
            else:
                value = hi - 1 if hi_excl else hi
        else:
            value = 0
        value += variant if within(value + variant) else 0
        if isinstance(step, int | float) and step > 0:
            candidate = math.ceil(value / step) * step
            if within(candidate):
                value = candidate
        return int(value) if integer else float(value)

    @staticmethod
    def _string(schema: dict[str, Any], *, name: str, variant: int) -> str:
        fmt = schema.get("format")
        base = _FORMAT_EXAMPLES.get(fmt, f"simulated {name}") if isinstance(fmt, str) else None
        if base is None:
            base = f"simulated {name}"
        if variant and fmt not in _FORMAT_EXAMPLES:
            base = f"{base} {variant + 1}"
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            for candidate in (base, "sim", "a", "A", "0", "a0", "sim-1", "x", ""):
                if re.search(pattern, candidate):
                    base = candidate
                    break
        max_len = schema.get("maxLength")
        if isinstance(max_len, int):
            base = base[:max_len]
        min_len = schema.get("minLength")
        if isinstance(min_len, int) and len(base) < min_len:
            base = base + "x" * (min_len - len(base))
        return base
