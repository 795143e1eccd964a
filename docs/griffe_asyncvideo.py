"""A griffe extension: attrs constructors, and the code's docstrings read as Markdown.

griffe reads the code without running it, so it sees no ``__init__`` on a class
made with ``@attrs.frozen`` or ``@attrs.define``: the constructor signature is
missing from the reference pages and every ``Args:`` entry looks unknown to
``mkdocs build --strict``. This rebuilds the signature from the annotated fields,
in order, the way attrs does for the forms this project uses (``kw_only=``,
``attrs.field(default=..., factory=..., init=False)``, a leading ``_`` dropped).

The docstrings are also written for readers of the code, not only for this
site: they say ``Example:`` (STYLE.md), which griffe's Google parser knows only
as ``Examples:`` (the section that renders ``>>>`` lines as code), and they
name things with Sphinx roles (``:class:`~asyncvideo.Job```), which Markdown
would print as they are. Both are rewritten in the loaded text, never in the
code: the heading is renamed, a role becomes inline code of the name it
shows (``Job``; the last part after a ``~``), and the ``::`` that opens an
reST literal block becomes ``:`` (the indented block is code in Markdown too).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ATTRS_DECORATORS = {"frozen", "define", "mutable", "s", "attrs"}
_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_LITERAL_BLOCK_MARKER = re.compile(r"(\S)::$", re.MULTILINE)
_SPHINX_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([^`]+)`")


def _attrs_call(cls: griffe.Class) -> griffe.Expr | None:
    for decorator in cls.decorators:
        value = decorator.value
        function = value.function if isinstance(value, griffe.ExprCall) else value
        path = function.canonical_path if isinstance(function, griffe.Expr) else str(function)
        module, _, name = path.rpartition(".")
        if module in {"attrs", "attr"} and name in _ATTRS_DECORATORS:
            return value if isinstance(value, griffe.Expr) else None
    return None


def _call_arguments(expr: object) -> dict[str, Any]:
    if not isinstance(expr, griffe.ExprCall):
        return {}
    return {
        argument.name: argument.value
        for argument in expr.arguments
        if isinstance(argument, griffe.ExprKeyword)
    }


def _field_call(attribute: griffe.Attribute) -> dict[str, Any] | None:
    value = attribute.value
    if isinstance(value, griffe.ExprCall) and value.canonical_path in {
        "attrs.field",
        "attr.ib",
        "attr.field",
    }:
        return _call_arguments(value)
    return None


def _parameters(cls: griffe.Class, kw_only: bool) -> list[griffe.Parameter]:
    parameters = []
    for member in cls.members.values():
        if not isinstance(member, griffe.Attribute) or member.annotation is None:
            continue
        if "class-attribute" in member.labels and "instance-attribute" not in member.labels:
            continue  # a ClassVar
        field = _field_call(member)
        if field is not None and str(field.get("init")) == "False":
            continue
        default: str | griffe.Expr | None
        if field is None:
            default = member.value
        elif "factory" in field:
            default = griffe.ExprCall(function=field["factory"], arguments=[])
        else:
            default = field.get("default")
        own_kw_only = field is not None and str(field.get("kw_only")) == "True"
        parameters.append(
            griffe.Parameter(
                member.name.lstrip("_"),
                annotation=member.annotation,
                kind=(
                    griffe.ParameterKind.keyword_only
                    if kw_only or own_kw_only
                    else griffe.ParameterKind.positional_or_keyword
                ),
                default=default,
                docstring=member.docstring,
            )
        )
    return parameters


def _add_init(cls: griffe.Class) -> None:
    if "__init__" in cls.members:
        return
    decorator = _attrs_call(cls)
    if decorator is None:
        return
    kw_only = str(_call_arguments(decorator).get("kw_only")) == "True"
    parameters = [
        griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
        *_parameters(cls, kw_only),
    ]
    init = griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(*parameters),
        returns="None",
    )
    cls.set_member("__init__", init)


def _role_as_code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rpartition('.')[2] if tilde else target}`"


def _as_markdown(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        text = _EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
        text = _LITERAL_BLOCK_MARKER.sub(r"\1:", text)
        obj.docstring.value = _SPHINX_ROLE.sub(_role_as_code, text)


def _walk(obj: griffe.Module | griffe.Class) -> None:
    _as_markdown(obj)
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue
        if isinstance(member, griffe.Class):
            _add_init(member)
        if isinstance(member, griffe.Module | griffe.Class):
            _walk(member)
        else:
            _as_markdown(member)


class AsyncvideoDocstrings(griffe.Extension):
    """Give attrs classes their ``__init__`` and make every docstring Markdown-ready."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Walk the loaded package once.

        Args:
            pkg: the package griffe has just loaded.
            **kwargs: what griffe passes besides.
        """
        _walk(pkg)
