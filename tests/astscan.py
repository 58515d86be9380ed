"""What the source scans (verdicts, vocabularies) read off a syntax tree: the string literals in
a node and the name a node refers to."""

from __future__ import annotations

import ast


def literals(node: ast.AST) -> list[str]:
    """The string constants of a node: itself, or the elements of a tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [x for elt in node.elts for x in literals(elt)]
    return []


def name(node: ast.AST) -> str:
    """The last name of ``a.b.c`` or ``c`` ("" for anything else)."""
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
