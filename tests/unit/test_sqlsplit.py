from hypothesis import given
from hypothesis import strategies as st

from db.sqlsplit import split_statements


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


def test_semicolons_inside_strings_identifiers_comments_and_dollar_bodies_do_not_split() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE "odd;name" (v text DEFAULT 'a;b' , w text DEFAULT E'it\\'s;');
    /* block; /* nested; */ still comment; */
    CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$
    BEGIN RETURN 1; END; $fn$;
    SELECT $$a;b$$, 'it''s;';
    """
    assert texts(sql) == [
        """CREATE TABLE "odd;name" (v text DEFAULT 'a;b' , w text DEFAULT E'it\\'s;');""",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$\n    BEGIN RETURN 1; END; $fn$;",
        "SELECT $$a;b$$, 'it''s;';",
    ]


def test_line_numbers_point_at_the_statement_not_its_leading_comment() -> None:
    sql = "SELECT 1;\n\n-- why\nSELECT 2;\nSELECT\n 3"
    assert [(s.line, s.text) for s in split_statements(sql)] == [
        (1, "SELECT 1;"),
        (4, "SELECT 2;"),
        (5, "SELECT\n 3"),
    ]


def test_comment_only_and_empty_scripts_have_no_statements() -> None:
    assert texts("") == []
    assert texts("-- nothing here\n/* nor here */ ;\n") == []


def test_positional_parameters_are_not_dollar_quotes() -> None:
    assert texts("SELECT $1; SELECT $2;") == ["SELECT $1;", "SELECT $2;"]


simple_statement = st.text(alphabet="abc xyz0123'\"$-/*\n", max_size=30).map(
    lambda s: "SELECT '" + s.replace("'", "''") + "';"
)


@given(st.lists(simple_statement, max_size=6))
def test_string_literals_of_any_content_stay_whole(statements: list[str]) -> None:
    assert texts("\n".join(statements)) == statements
