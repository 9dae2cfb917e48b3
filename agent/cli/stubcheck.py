"""`tally stubcheck`: check the device-side modules against the MicroPython
ESP32 stubs (the micropython-esp32-stubs package), so that an API the ESP32
lacks is caught before a board is. CPython only. A static check with `ast`
on our sources and on the stubs' .pyi files: no type checker, no type
inference. (Over 500 lines on purpose: the checker is one walk over a
module's AST, FileCheck, and the stub index it asks; split in two, each half
would have to be read with the other open.)

What is checked, in every module flashed on an ESP32 (hil.harness.mpbuild's device
sources less hil/, which ESP32 bundles leave out, and boards/emulated.py,
which runs only on the unix port):
- `import X` and `from X import Y`: X is a module of the ESP32 firmware (a
  module of micropython-esp32-stubs, or a stdlib stub it re-exports as uX)
  and Y is defined in X's stub. Our own packages (agent, drivers, boards,
  hil) resolve to our files: the module must be in the ESP32 bundle and Y
  defined at its top level.
- `X.a.b` where X names a module imported as above: each attribute is looked
  up in the stubs, through classes and the base classes the stubs define
  (esp32.Partition.find, esp32.Partition.TYPE_DATA); in our modules, at
  their top level as MicroPython imports them (port.random_u32 is looked up
  in agent/port/micropython.py, which agent/port star-imports there).

The branch the ESP32 takes is checked, not the others:
- `if sys.implementation.name == "micropython"` (or a name bound to that
  test): only the MicroPython branch.
- `hasattr(X, "n")` guards X.n in the `if` body (and in the rest of the block
  after `if not hasattr(X, "n"): return`); `getattr(X, "n", default)` is not
  checked.
- try/except ImportError: when the imports in the `try` resolve, a handler
  that catches only ImportError, ModuleNotFoundError or AttributeError is
  never taken on the ESP32: it is the CPython fallback and is not checked.
  When an import in the `try` fails on the ESP32, the handler is what runs
  there: the failed import is fine only if the handler defines every name
  the import would have bound (or leaves the block: return, raise, break,
  continue), and the handler is then checked as device code. A failed
  guarded import of a module in ALLOWED_GUARDED is fine whatever the handler.

Limits: no type inference, so nothing is followed through a value, a call
or an instance (i2c.readfrom_mem_intox on an I2C object is not caught, nor
are our classes' attributes). The ESP32 stubs re-export a reduced copy of
CPython's typeshed for os, sys, struct, json, io, collections, array, re,
asyncio and ssl: names CPython has there but the ESP32 lacks (os.fsync,
os.getpid, struct.iter_unpack) are in the stubs and are not caught.
Bindings are per file: a name the file also assigns or takes as a
parameter is never taken for a module.
"""
import ast
import json
import os
from collections import namedtuple

from agent.cli.common import err
from hil.harness import mpbuild

STUBS_DIST = "micropython-esp32-stubs"
STDLIB_DIST = "micropython-stdlib-stubs"
PROJECT = mpbuild.DEVICE_PACKAGES
GUARD_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
FALLBACK_ONLY = {"ImportError", "ModuleNotFoundError", "AttributeError"}
# a failed import of these under an ImportError guard is fine, with the reason
ALLOWED_GUARDED = {
    "typing": "annotations only: MicroPython has no typing module and ignores annotations",
    "typing_extensions": "as typing",
}
MISSING = object()                       # a lookup that found nothing

# kind: "stub" (a stub module), "cls" (a class in stub module mod), "proj" (our module)
Ref = namedtuple("Ref", "kind mod node name")
Finding = namedtuple("Finding", "path line msg binds module")


class StubsMissing(Exception):
    pass


# -- the stubs ---------------------------------------------------------------------------

def _modname(parts):
    parts = list(parts)
    parts[-1] = parts[-1][:-4]                       # .pyi
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _dist(name, path):
    import importlib.metadata as md
    kw = {"path": [path]} if path else {}
    return next(iter(md.distributions(name=name, **kw)), None)


def find_stubs(path=None):
    """The installed stubs (or those in path, e.g. from pip install --target)."""
    esp = _dist(STUBS_DIST, path)
    if esp is None:
        raise StubsMissing("no ESP32 stubs%s: pip install %s"
                           % (" in %s" % path if path else "", STUBS_DIST))
    files, board = {}, set()
    std = _dist(STDLIB_DIST, path)
    for f in (std.files or []) if std else []:
        if f.suffix == ".pyi" and f.parts[0] in ("stdlib", "_mpy_shed"):
            parts = f.parts[1:] if f.parts[0] == "stdlib" else f.parts
            files[_modname(parts)] = str(f.locate())
    for f in esp.files or []:
        if f.suffix == ".pyi":
            files[_modname(f.parts)] = str(f.locate())
            board.add(_modname(f.parts))
    return Stubs(files, board, esp.version)


def _absolute(mod, is_pkg, level, name):
    """The module a relative import names."""
    if not level:
        return name
    base = mod.split(".")
    base = base[:len(base) - level + (1 if is_pkg else 0)]
    return ".".join(base + ([name] if name else []))


StubModule = namedtuple("StubModule", "defs exports imports stars open")


def _stub_blocks(body):
    """The statements of a stub module, through if/try/with blocks (all branches)."""
    for s in body:
        if isinstance(s, (ast.If, ast.Try, ast.With)):
            for h in getattr(s, "handlers", []):
                yield from _stub_blocks(h.body)
            for f in ("body", "orelse", "finalbody"):
                yield from _stub_blocks(getattr(s, f, []))
        else:
            yield s


def parse_stub(source, mod, is_pkg):
    defs, exports, imports, stars = {}, {}, {}, []
    for s in _stub_blocks(ast.parse(source).body):
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[s.name] = s
        elif isinstance(s, ast.Assign):
            for t in s.targets:
                defs.update((n.id, s) for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
            if ast.unparse(s.annotation) != "TypeAlias":      # types only, not at run time
                defs[s.target.id] = s
        elif isinstance(s, ast.Import):
            for a in s.names:
                bound = a.name if a.asname else a.name.split(".")[0]
                imports[a.asname or bound] = (bound, None)
                if a.asname == a.name:                        # `import X as X`: re-exported
                    exports[a.asname] = (a.name, None)
        elif isinstance(s, ast.ImportFrom):
            src = _absolute(mod, is_pkg, s.level, s.module)
            for a in s.names:
                if a.name == "*":
                    stars.append(src)
                    continue
                imports[a.asname or a.name] = (src, a.name)
                if a.asname == a.name:
                    exports[a.name] = (src, a.name)
    return StubModule(defs, exports, imports, stars, "__getattr__" in defs)


class Stubs:
    """The stub modules: files maps every stub module to its .pyi; board holds
    the ESP32 firmware's modules (the board package's own, and the stdlib
    stubs it re-exports: `from os import *` in uos.pyi)."""

    def __init__(self, files, board, version):
        self.files = files
        self.version = version
        self._parsed = {}
        self.on_esp32 = set(board)
        for m in board:
            self.on_esp32.update(s for s in self.module(m).stars if s in files)

    def module(self, mod):
        if mod not in self._parsed:
            path = self.files.get(mod)
            if path is None:
                self._parsed[mod] = None
            else:
                with open(path, encoding="utf-8") as f:
                    src = f.read()
                self._parsed[mod] = parse_stub(src, mod, path.endswith("__init__.pyi"))
        return self._parsed[mod]

    def attr(self, mod, name, seen=()):
        """What name is in stub module mod: a Ref, None (exists, not followed) or MISSING."""
        m = self.module(mod)
        if m is None or mod in seen:
            return MISSING
        if m.open or name.startswith("__"):
            return None
        if name in m.defs:
            d = m.defs[name]
            return Ref("cls", mod, d, None) if isinstance(d, ast.ClassDef) else None
        if name in m.exports:
            return self._imported(*m.exports[name])
        for s in m.stars:
            r = self.attr(s, name, seen + (mod,))
            if r is not MISSING:
                return r
        if mod + "." + name in self.files:
            return Ref("stub", mod + "." + name, None, None)
        return MISSING

    def _imported(self, mod, name):
        if name is None:
            return Ref("stub", mod, None, None) if mod in self.files else None
        r = self.attr(mod, name)
        return None if r is MISSING else r           # a stub's own import we cannot follow

    def class_attr(self, mod, cls, name, depth=0):
        if name.startswith("__") or depth > 10:
            return None
        for s in _stub_blocks(cls.body):
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and s.name == name:
                return Ref("cls", mod, s, None) if isinstance(s, ast.ClassDef) else None
            targets = s.targets if isinstance(s, ast.Assign) else [getattr(s, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return None
        for b in cls.bases:
            base = self._base(mod, b)
            if base is None:
                return None                          # a base we cannot see into: anything goes
            if base is not MISSING:
                r = self.class_attr(base.mod, base.node, name, depth + 1)
                if r is not MISSING:
                    return r
        return MISSING

    def _base(self, mod, b):
        """A base class: its Ref, MISSING (adds nothing: object, Generic) or None (unknown)."""
        if isinstance(b, ast.Subscript):
            b = b.value
        if isinstance(b, ast.Name) and b.id in ("object", "Generic", "Protocol"):
            return MISSING
        if not isinstance(b, ast.Name):
            return None
        m = self.module(mod)
        d = m.defs.get(b.id)
        if isinstance(d, ast.ClassDef):
            return Ref("cls", mod, d, None)
        if b.id in m.imports:
            r = self._imported(*m.imports[b.id])
            if r is not None and r.kind == "cls":
                return r
        return None


# -- our modules -------------------------------------------------------------------------

def platform_test(test, names):
    """True/False when test is `sys.implementation.name ==/!= "..."` (or a name in
    names bound to one): its value on MicroPython. None for any other test."""
    if isinstance(test, ast.Name):
        return names.get(test.id)
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        v = platform_test(test.operand, names)
        return None if v is None else not v
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], (ast.Eq, ast.NotEq))):
        return None
    sides = [test.left, test.comparators[0]]
    consts = [s.value for s in sides if isinstance(s, ast.Constant) and isinstance(s.value, str)]
    if len(consts) != 1 or "sys.implementation.name" not in [ast.unparse(s) for s in sides]:
        return None
    return (consts[0] == "micropython") == isinstance(test.ops[0], ast.Eq)


def defined_names(body, mod="", is_pkg=False):
    """Names a block binds at its own level (module top level, a handler body),
    through if (the MicroPython branch)/try/with/for/while; and the modules it
    star-imports."""
    names, stars = set(), []
    for s in body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(s.name)
        elif isinstance(s, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in s.names)
        elif isinstance(s, ast.ImportFrom):
            for a in s.names:
                if a.name == "*":
                    stars.append(_absolute(mod, is_pkg, s.level, s.module))
                else:
                    names.add(a.asname or a.name)
        elif isinstance(s, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With)):
            for t in getattr(s, "targets", []) + [getattr(s, "target", None)] + \
                    [i.optional_vars for i in getattr(s, "items", [])]:
                if t is not None:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        if isinstance(s, ast.If):
            side = platform_test(s.test, {})
            blocks = [s.body, s.orelse] if side is None else [s.body if side else s.orelse]
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            blocks = []
        else:
            blocks = [getattr(s, f, []) for f in ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(s, "handlers", [])]
        for b in blocks:
            n, st = defined_names(b, mod, is_pkg)
            names |= n
            stars += st
    return names, stars


class Project:
    """Our own modules: what is in the ESP32 bundle, and the names each defines."""

    def __init__(self, root, on_device):
        self.root = root
        self.on_device = set(on_device)
        self._names = {}

    def file(self, mod):
        base = mod.replace(".", "/")
        for rel in (base + ".py", base + "/__init__.py"):
            if os.path.isfile(os.path.join(self.root, rel)):
                return rel
        return None

    def names(self, mod, seen=()):
        if mod not in self._names:
            rel = self.file(mod)
            with open(os.path.join(self.root, rel), encoding="utf-8") as f:
                tree = ast.parse(f.read(), rel)
            names, stars = defined_names(tree.body, mod, rel.endswith("__init__.py"))
            names.update(n for g in ast.walk(tree) if isinstance(g, ast.Global) for n in g.names)
            for s in stars:
                if s.split(".")[0] in PROJECT and s not in seen and self.file(s):
                    names |= self.names(s, seen + (mod,))
            self._names[mod] = names
        return self._names[mod]

    def attr(self, mod, name):
        if self.file(mod + "." + name):
            return Ref("proj", mod + "." + name, None, None)
        if name.startswith("__") or name in self.names(mod):
            return None
        return MISSING


# -- the check ---------------------------------------------------------------------------

def _caught(h):
    """The exception names a handler catches; None for a bare except."""
    if h.type is None:
        return None
    ts = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
    return {t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "?") for t in ts}


def _exits(body):
    return bool(body) and isinstance(body[-1], (ast.Return, ast.Raise, ast.Continue, ast.Break))


def _hasattr_guards(test):
    """(guards when test is true, guards when it is false): {(expr, attr)} from hasattr()."""
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and test.func.id == "hasattr"
            and len(test.args) == 2 and isinstance(test.args[1], ast.Constant)):
        return {(ast.unparse(test.args[0]), test.args[1].value)}, set()
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        t, f = _hasattr_guards(test.operand)
        return f, t
    if isinstance(test, ast.BoolOp):
        parts = [_hasattr_guards(v) for v in test.values]
        if isinstance(test.op, ast.And):
            return set().union(*(p[0] for p in parts)), set()
        return set(), set().union(*(p[1] for p in parts))
    return set(), set()


def _rebound(tree):
    """Names the file binds other than by import: those are never taken for a module."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
    return out


class Checker:
    def __init__(self, stubs, project):
        self.stubs = stubs
        self.project = project
        self.checked = 0                     # imports and attributes looked up

    def not_in_stubs(self, name):
        return "%s is not in the ESP32 stubs (%s %s)" % (name, STUBS_DIST, self.stubs.version)

    def module(self, mod):
        """(Ref, None) for a module the ESP32 has, or (None, the reason it does not)."""
        self.checked += 1
        if mod.split(".")[0] in PROJECT:
            rel = self.project.file(mod)
            if rel is None:
                return None, "%s is not a module of this project" % mod
            if rel not in self.project.on_device:
                return None, "%s is not in the ESP32 bundle (%s is not flashed)" % (mod, rel)
            return Ref("proj", mod, None, mod), None
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            if ".".join(parts[:i]) not in self.stubs.on_esp32:
                return None, self.not_in_stubs(".".join(parts[:i]))
        return Ref("stub", mod, None, mod), None

    def attr(self, ref, name):
        """(the Ref of ref.name, None) or (None, why it is missing); a Ref of None: not followed."""
        self.checked += 1
        if ref.kind == "proj":
            r = self.project.attr(ref.mod, name)
        elif ref.kind == "stub":
            r = self.stubs.attr(ref.mod, name)
        else:
            r = self.stubs.class_attr(ref.mod, ref.node, name)
        full = "%s.%s" % (ref.name, name)
        if r is MISSING:
            if ref.kind == "proj":
                return None, "%s is not defined in %s" % (full, self.project.file(ref.mod))
            return None, self.not_in_stubs(full)
        return (r._replace(name=full) if r else None), None

    def check_file(self, path, display, mod):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        fc = FileCheck(self, display, mod, path.endswith("__init__.py"), tree)
        fc.scope(tree.body, {}, frozenset())
        return fc.findings


class FileCheck:
    """One module, walked along the branches the ESP32 takes. env maps a name
    to the module (or stub class) an import bound it to."""

    def __init__(self, checker, display, mod, is_pkg, tree):
        self.c = checker
        self.display = display
        self.mod = mod
        self.is_pkg = is_pkg
        self.rebound = _rebound(tree)
        self.platform = {}                   # names bound to a sys.implementation test
        self.findings = []

    def finding(self, node, msg, binds=None, module=None):
        self.findings.append(Finding(self.display, node.lineno, msg, binds, module))

    def scope(self, body, env, guards):
        """A module or function body; the functions it defines are walked at its end,
        with the names it has imported by then (as when they are called)."""
        deferred = []
        self.block(body, env, guards, deferred)
        for fn, g in deferred:
            self.scope(fn.body, dict(env), g)

    def block(self, body, env, guards, deferred):
        for s in body:
            if isinstance(s, ast.Import):
                self.import_(s, env)
            elif isinstance(s, ast.ImportFrom):
                self.import_from(s, env)
            elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for d in s.decorator_list + s.args.defaults + [d for d in s.args.kw_defaults if d]:
                    self.expr(d, guards, env)
                deferred.append((s, guards))
            elif isinstance(s, ast.ClassDef):
                for d in s.decorator_list + s.bases:
                    self.expr(d, guards, env)
                self.block(s.body, dict(env), guards, deferred)
            elif isinstance(s, ast.If):
                guards = guards | self.if_(s, env, guards, deferred)
            elif isinstance(s, ast.Try):
                self.try_(s, env, guards, deferred)
            else:
                self.statement(s, env, guards, deferred)

    def statement(self, s, env, guards, deferred):
        if (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
                and platform_test(s.value, self.platform) is not None):
            self.platform[s.targets[0].id] = platform_test(s.value, self.platform)
        for _, v in ast.iter_fields(s):
            if isinstance(v, list) and v and isinstance(v[0], ast.stmt):
                self.block(v, env, guards, deferred)
            elif isinstance(v, list):
                for x in v:
                    if isinstance(x, ast.AST):
                        self.expr(x, guards, env)
            elif isinstance(v, ast.AST):
                self.expr(v, guards, env)

    def if_(self, s, env, guards, deferred):
        """Walk an if; returns the guards it leaves for the rest of the block."""
        side = platform_test(s.test, self.platform)
        if side is not None:
            self.block(s.body if side else s.orelse, env, guards, deferred)
            return frozenset()
        self.expr(s.test, guards, env)
        true, false = _hasattr_guards(s.test)
        self.block(s.body, env, guards | true, deferred)
        self.block(s.orelse, env, guards | false, deferred)
        return frozenset(false) if _exits(s.body) else frozenset()

    def try_(self, s, env, guards, deferred):
        mark = len(self.findings)
        self.block(s.body, env, guards, deferred)
        failed = self.findings[mark:]
        del self.findings[mark:]
        caught = [_caught(h) for h in s.handlers]
        guarding = [h for h, c in zip(s.handlers, caught) if c is None or c & GUARD_ERRORS]
        attr_ok = any(c is None or c & {"AttributeError", "Exception", "BaseException"} for c in caught)
        for f in failed:
            if f.binds is None:                          # an attribute
                if not attr_ok:
                    self.findings.append(f)
            elif not guarding:
                self.findings.append(f)
            elif f.module not in ALLOWED_GUARDED and not any(self.resolves(h, f.binds) for h in guarding):
                self.findings.append(f._replace(msg="%s; its ImportError fallback does not define %s"
                                                % (f.msg, ", ".join(f.binds))))
        for h, c in zip(s.handlers, caught):
            if not failed and c is not None and c <= FALLBACK_ONLY:
                continue                                 # the ESP32 never takes it
            self.block(h.body, env, guards, deferred)
        self.block(s.orelse, env, guards, deferred)
        self.block(s.finalbody, env, guards, deferred)

    def resolves(self, handler, binds):
        return _exits(handler.body) or set(binds) <= defined_names(handler.body)[0]

    def bind(self, env, name, ref):
        if name not in self.rebound:
            env[name] = ref

    def import_(self, s, env):
        for a in s.names:
            ref, why = self.c.module(a.name)
            top = a.name.split(".")[0]
            if why:
                self.finding(s, why, (a.asname or top,), top)
            elif a.asname:
                self.bind(env, a.asname, ref)
            else:
                self.bind(env, top, ref._replace(mod=top, name=top))

    def import_from(self, s, env):
        mod = _absolute(self.mod, self.is_pkg, s.level, s.module)
        names = [a.asname or a.name for a in s.names if a.name != "*"]
        top = mod.split(".")[0]
        ref, why = self.c.module(mod)
        if why:
            self.finding(s, why, tuple(names), top)
            return
        for a in s.names:
            if a.name == "*":
                continue
            r, why = self.c.attr(ref, a.name)
            if why:
                self.finding(s, why, (a.asname or a.name,), top)
            else:
                self.bind(env, a.asname or a.name, r)

    def expr(self, node, guards, env):
        if isinstance(node, ast.Attribute):
            return self.attribute(node, guards, env)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
            if node.func.id == "getattr" and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
                self.attribute(ast.Attribute(node.args[0], node.args[1].value, ast.Load(),
                                             lineno=node.lineno), guards, env)
            for a in node.args[2:]:
                self.expr(a, guards, env)
            return self.expr(node.args[0], guards, env)
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self.expr(v, guards, env)
                true, false = _hasattr_guards(v)
                guards = guards | (true if isinstance(node.op, ast.And) else false)
            return
        if isinstance(node, ast.IfExp):
            side = platform_test(node.test, self.platform)
            if side is not None:
                return self.expr(node.body if side else node.orelse, guards, env)
            self.expr(node.test, guards, env)
            true, false = _hasattr_guards(node.test)
            self.expr(node.body, guards | true, env)
            return self.expr(node.orelse, guards | false, env)
        for child in ast.iter_child_nodes(node):
            self.expr(child, guards, env)

    def attribute(self, node, guards, env):
        chain = []
        base = node
        while isinstance(base, ast.Attribute):
            chain.insert(0, base.attr)
            base = base.value
        if not isinstance(base, ast.Name):
            return self.expr(base, guards, env)
        if not isinstance(node.ctx, ast.Load):
            chain.pop()                                  # X.a.b = v: X.a must exist, b need not
        ref = env.get(base.id)
        prefix = base.id
        for name in chain:
            if ref is None or (prefix, name) in guards:
                return
            ref, why = self.c.attr(ref, name)
            if why:
                return self.finding(node, why)
            prefix += "." + name


# -- entry points ------------------------------------------------------------------------

def device_modules(root=mpbuild.ROOT):
    """The modules of an ESP32 bundle: mpbuild's device sources less hil/ (the
    emulation, left out of ESP32 bundles) and the CPython-only agent/cli/ tools."""
    return [r for r in mpbuild.device_sources(root)
            if not r.startswith(("hil/", "agent/cli/"))]


def checked_modules(root=mpbuild.ROOT):
    """What the check reads: the bundle less boards/emulated.py (the unix port's)."""
    return [r for r in device_modules(root) if r != "boards/emulated.py"]


def check(files=None, root=mpbuild.ROOT, stubs=None):
    """Check files (paths relative to root, or absolute; default: checked_modules).
    Our packages resolve under root. Returns (findings, stats)."""
    stubs = stubs or find_stubs()
    files = checked_modules(root) if files is None else files
    c = Checker(stubs, Project(root, device_modules(root)))
    findings = []
    for f in files:
        path = os.path.join(root, f)
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        inside = not rel.startswith("../")
        mod = rel[:-3].replace("/", ".") if inside else os.path.basename(f)[:-3]
        if mod.endswith(".__init__"):
            mod = mod[:-9]
        findings += c.check_file(path, rel if inside else f, mod)
    stats = {"modules": len(files), "checked": c.checked, "stubs": STUBS_DIST,
             "version": stubs.version}
    return findings, stats


def summary(stats, findings):
    return "%d modules, %d imports/attributes checked against %s %s: %s" % (
        stats["modules"], stats["checked"], STUBS_DIST, stats["version"],
        "%d findings" % len(findings) if findings else "clean")


def as_json(stats, findings):
    return dict(stats, findings=[{"path": f.path, "line": f.line, "message": f.msg} for f in findings])


# -- the command --------------------------------------------------------------------------

def run(a):
    try:
        findings, stats = check(stubs=find_stubs(a.stubs))
    except StubsMissing as e:
        return err("stubcheck: %s" % e)
    if a.json:
        print(json.dumps(as_json(stats, findings), indent=1))
    else:
        for f in findings:
            print("%s:%d: %s" % (f.path, f.line, f.msg))
        print("tally: stubcheck: " + summary(stats, findings))
    return 1 if findings else 0


def add(sub):
    sc = sub.add_parser("stubcheck", help="check the device-side modules against the MicroPython ESP32 stubs",
                        description="Check every import and module attribute of the modules flashed "
                        "on an ESP32 against the micropython-esp32-stubs package (a static check: "
                        "no type inference). Exit 0 clean, 1 with findings (path:line: what), 2 "
                        "without the stubs.")
    sc.add_argument("--stubs", metavar="DIR", help="stubs installed with pip install --target DIR "
                    "(default: the installed micropython-esp32-stubs)")
    sc.add_argument("--json", action="store_true", help="the findings and counts as JSON")
    sc.set_defaults(func=run)
