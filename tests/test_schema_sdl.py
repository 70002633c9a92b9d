"""``schema/schema.graphql`` is the committed contract: this fails when it is stale, so a schema
change (and especially a breaking one) is always a visible, reviewed diff."""

from __future__ import annotations

from schema import SDL_PATH, sdl


def test_committed_sdl_is_current() -> None:
    committed = SDL_PATH.read_text(encoding="utf-8") if SDL_PATH.exists() else ""
    assert committed == sdl(), (
        "schema/schema.graphql is stale. Regenerate it with "
        "`memberhub export-schema --output schema/schema.graphql` and review the diff "
        "(breaking changes must be deliberate and documented)."
    )


def test_sdl_documents_every_type_and_field() -> None:
    """Field descriptions are the API docs: every object type and field has one."""
    from graphql import GraphQLInputObjectType, GraphQLObjectType

    from schema import build_schema

    gql = build_schema()._schema
    missing = []
    for name, t in gql.type_map.items():
        if name.startswith("__") or name in ("Query", "Mutation", "PageInfo"):
            continue
        if isinstance(t, GraphQLObjectType | GraphQLInputObjectType):
            if not t.description:
                missing.append(name)
            missing += [f"{name}.{f}" for f, d in t.fields.items() if not d.description]
    for root in ("Query", "Mutation"):
        t = gql.type_map[root]
        assert isinstance(t, GraphQLObjectType)
        missing += [f"{root}.{f}" for f, d in t.fields.items() if not d.description]
    assert not missing, f"undocumented: {missing}"


def test_leaf_field_fast_path_is_active() -> None:
    """schema/execution.py finds Strawberry's plain attribute fields by introspecting its compiled
    resolvers; if a Strawberry upgrade changes them the fast path quietly switches off (still
    correct, ~25 % slower on lists). This test makes that visible."""
    from schema import build_schema

    plans = build_schema().execution_context_class.leaf_plans  # type: ignore[attr-defined]
    assert len(plans) > 50
    assert ("Balance", "available") in plans and ("Order", "paidFen") in plans


def test_every_graphql_block_of_the_schema_readme_validates() -> None:
    """Frontend teams copy these examples: each ```graphql block (tagged or not) of
    schema/README.md must parse and validate against the schema as built."""
    import re
    from pathlib import Path

    from graphql import parse, validate
    from graphql.validation import LoneAnonymousOperationRule, specified_rules

    from schema import build_schema

    # A block may list several anonymous operations side by side.
    rules = [r for r in specified_rules if r is not LoneAnonymousOperationRule]
    readme = (Path(__file__).resolve().parents[1] / "schema" / "README.md").read_text("utf-8")
    blocks = re.findall(r"```graphql[^\n]*\n(.*?)```", readme, re.S)
    assert len(blocks) >= 6
    schema = build_schema()._schema
    for block in blocks:
        assert validate(schema, parse(block), rules) == [], block[:80]
