"""The import check against planted trees: it fails on each kind of circle
and boundary crossing it is meant to find, and passes the patterns the
codebase relies on."""

import io
import shutil
import tempfile
import unittest
from contextlib import redirect_stdout
from pathlib import Path

import check

WORKSPACE = Path(__file__).resolve().parents[2]


def crate(files: dict[str, str]) -> Path:
    """A temporary package with `src/<path>` = text for each entry."""
    root = Path(tempfile.mkdtemp(prefix="circles-"))
    for path, text in files.items():
        file = root / "src" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    return root


def run(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = check.main([str(root)])
    if root != WORKSPACE:
        shutil.rmtree(root)
    return status, out.getvalue()


class PlantedCircles(unittest.TestCase):
    def test_two_siblings_importing_each_other_fail(self):
        status, out = run(crate({
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::b::B;\npub struct A(B);\n",
            "b.rs": "pub struct B;\npub fn f(_: super::a::A) {}\n",
        }))
        self.assertEqual(status, 1, out)
        self.assertIn("among the modules of crate: a, b", out)

    def test_a_circle_through_three_modules_and_a_use_alias_fails(self):
        status, out = run(crate({
            "lib.rs": "mod a;\nmod b;\nmod c;\n",
            "a.rs": "use crate::b as other;\nfn f() { other::g() }\n",
            "b.rs": "pub fn g() { crate::c::h() }\n",
            "c.rs": "use super::a;\npub fn h() { a::A }\n",
        }))
        self.assertEqual(status, 1, out)
        self.assertIn("a, b, c", out)

    def test_nested_modules_of_two_subtrees_make_their_parents_a_circle(self):
        status, out = run(crate({
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
        status, out = run(crate({
            "lib.rs": "pub mod p;\n",
            "p/mod.rs": "pub mod one;\npub mod two;\npub use one::Thing;\n",
            "p/one.rs": "pub struct Thing;\nfn f() { super::two::g() }\n",
            "p/two.rs": "use super::Thing;\npub fn g() -> Option<Thing> { None }\n",
        }))
        self.assertEqual(status, 1, out)
        self.assertIn("among the modules of p: one, two", out)


class AllowedPatterns(unittest.TestCase):
    def test_a_parent_and_its_children_may_use_each_other(self):
        status, out = run(crate({
            "lib.rs": "pub mod c;\n",
            "c/mod.rs": "mod step;\npub struct Context;\nfn run() { step::go(&Context) }\n",
            "c/step.rs": "use super::Context;\npub fn go(_: &Context) {}\n",
        }))
        self.assertEqual(status, 0, out)

    def test_comments_strings_and_test_code_make_no_edge(self):
        status, out = run(crate({
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
        status, out = run(WORKSPACE)
        self.assertEqual(status, 0, out)

    def test_a_provider_module_naming_the_controller_is_a_circle_and_a_crossing(self):
        status, out = run(planted("provider/model.rs", "pub fn planted(_: &crate::controller::Context) {}"))
        self.assertEqual(status, 1, out)
        self.assertIn("among the modules of crate: ", out)
        self.assertIn("provider::model -> controller", out)
        self.assertIn("provider::model names controller (", out)

    def test_the_controller_naming_a_provider_s_client_crosses_the_boundary(self):
        status, out = run(planted("controller/convert.rs", "pub fn planted(_: &crate::provider::ecs::EcsClient) {}"))
        self.assertEqual(status, 1, out)
        self.assertIn("controller::convert names provider::ecs (", out)
        self.assertIn("which only provider may name", out)

    def test_provider_code_naming_kubernetes_crosses_the_boundary(self):
        status, out = run(planted("provider/model.rs", "pub fn planted(_: kube::Client) {}"))
        self.assertEqual(status, 1, out)
        self.assertIn("provider::model names the crate kube", out)


def planted(file: str, line: str) -> Path:
    """A copy of the operator's package with `line` added to `src/<file>`."""
    root = Path(tempfile.mkdtemp(prefix="circles-"))
    shutil.copytree(WORKSPACE / "src", root / "src")
    shutil.copy(WORKSPACE / "Cargo.toml", root / "Cargo.toml")
    target = root / "src" / file
    target.write_text(target.read_text() + "\n" + line + "\n")
    return root


if __name__ == "__main__":
    unittest.main()
