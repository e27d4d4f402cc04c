"""The import-circle check against planted trees: it fails on each kind of
circle it is meant to find, and passes the patterns the codebase relies on."""

import io
import shutil
import tempfile
import unittest
from contextlib import redirect_stdout
from pathlib import Path

import circles

WORKSPACE = Path(__file__).resolve().parents[2]


def crate(files: dict[str, str]) -> Path:
    """A temporary package with `src/<path>` = text for each entry."""
    root = Path(tempfile.mkdtemp(prefix="circles-"))
    for path, text in files.items():
        file = root / "src" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return root


def check(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = circles.main([str(root)])
    if root != WORKSPACE:
        shutil.rmtree(root)
    return status, out.getvalue()


class PlantedCircles(unittest.TestCase):
    def test_two_siblings_importing_each_other_fail(self):
        status, out = check(crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::b::B;\npub struct A(B);\n",
            "b.rs": "pub struct B;\npub fn f(_: super::a::A) {}\n",
        }))
        self.assertEqual(status, 1, out)
        self.assertIn("among the modules of crate: a, b", out)

    def test_a_circle_through_three_modules_and_a_use_alias_fails(self):
        status, out = check(crate({
            "lib.rs": "mod a;\nmod b;\nmod c;\n",
            "a.rs": "use crate::b as other;\nfn f() { other::g() }\n",
            "b.rs": "pub fn g() { crate::c::h() }\n",
            "c.rs": "use super::a;\npub fn h() { a::A }\n",
        }))
        self.assertEqual(status, 1, out)
        self.assertIn("a, b, c", out)

    def test_nested_modules_of_two_subtrees_make_their_parents_a_circle(self):
        status, out = check(crate({
            "lib.rs": "mod x;\nmod y;\n",
            "x/mod.rs": "mod inner;\n",
            "x/inner.rs": "use crate::y::deep::D;\npub struct I;\n",
            "y/mod.rs": "pub mod deep;\n",
            "y/deep.rs": "pub struct D;\nfn f(_: crate::x::inner::I) {}\n",
        }))
        self.assertEqual(status, 1, out)
        self.assertIn("among the modules of crate: x, y", out)

    def test_a_child_reaching_back_into_its_sibling_through_the_parent_facade_fails(self):
        # `super::Thing` is re-exported by mod.rs from the sibling: the edge goes to the sibling.
        status, out = check(crate({
            "lib.rs": "pub mod p;\n",
            "p/mod.rs": "pub mod one;\npub mod two;\npub use one::Thing;\n",
            "p/one.rs": "pub struct Thing;\nfn f() { super::two::g() }\n",
            "p/two.rs": "use super::Thing;\npub fn g() -> Option<Thing> { None }\n",
        }))
        self.assertEqual(status, 1, out)
        self.assertIn("among the modules of p: one, two", out)


class AllowedPatterns(unittest.TestCase):
    def test_a_parent_and_its_children_may_use_each_other(self):
        status, out = check(crate({
            "lib.rs": "pub mod c;\n",
            "c/mod.rs": "mod step;\npub struct Context;\nfn run() { step::go(&Context) }\n",
            "c/step.rs": "use super::Context;\npub fn go(_: &Context) {}\n",
        }))
        self.assertEqual(status, 0, out)

    def test_comments_strings_and_test_code_make_no_edge(self):
        status, out = check(crate({
            "lib.rs": "pub mod a;\npub mod b;\npub use a::A;\n",
            "a.rs": "\n".join([
                "//! Not an import: crate::b::B, nor [`B`](crate::b::B).",
                "pub struct A;",
                'const S: &str = "crate::b::B";',
                "#[cfg(test)]",
                "mod tests { use crate::b::B; }",
                "#[cfg(test)]",
                "fn helper() -> crate::b::B { crate::b::B }",
            ]),
            "b.rs": "pub use crate::a::A as Alias;\npub struct B(pub crate::a::A);\n",
        }))
        self.assertEqual(status, 0, out)


class TheWorkspace(unittest.TestCase):
    def test_the_workspace_has_no_circle(self):
        status, out = check(WORKSPACE)
        self.assertEqual(status, 0, out)

    def test_a_provider_module_naming_the_controller_is_a_circle(self):
        root = Path(tempfile.mkdtemp(prefix="circles-"))
        shutil.copytree(WORKSPACE / "src", root / "src")
        model = root / "src" / "provider" / "model.rs"
        model.write_text(model.read_text() + "\npub fn planted(_: &crate::controller::Context) {}\n")
        status, out = check(root)
        self.assertEqual(status, 1, out)
        self.assertIn("among the modules of crate: ", out)
        self.assertIn("provider::model -> controller", out)


if __name__ == "__main__":
    unittest.main()
