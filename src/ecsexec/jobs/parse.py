"""Parse Rundeck job YAML (the subset ecsexec runs) into jobs; every error names file:line. Pure.

A file is a YAML sequence of jobs, as ``rd jobs list -F yaml`` writes it (the older
map-of-options form is accepted too). Keys that only matter to a Rundeck server's UI
(``defaultTab``, ``loglevel``…) are accepted and ignored; ``notification`` is ignored with
a warning; ``schedule``, ``scheduleEnabled`` and ``timeZone`` are read (``ecsexec server``
fires scheduled jobs, :mod:`ecsexec.jobs.schedule`); anything else ecsexec cannot honour,
and anything unknown, is an error. Scalars are read as written (``value: 010`` stays
``"010"``), not through YAML 1.1's type guessing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Final, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ecsexec.errors import FilterSyntaxError, JobFileError
from ecsexec.jobs.expand import (
    OPTION_NAME,
    REFERENCE,
    Reference,
    reference_problem,
    references,
)
from ecsexec.jobs.model import (
    INVALID_KEY_PATTERN,
    KEY_VALUE_PATTERN,
    STRATEGIES,
    Dispatch,
    Job,
    JobFile,
    JobOption,
    JobRef,
    LogFilter,
    Step,
    Where,
)
from ecsexec.jobs.schedule import Schedule
from ecsexec.jobs.script_source import redact_url
from ecsexec.nodes.filter import parse_filter
from ecsexec.nodes.javaregex import (
    JavaRegexError,
    RegexCostError,
    compile_bounded,
    compile_java,
)

T = TypeVar("T")

_NULL: Final = "tag:yaml.org,2002:null"
_TRUE: Final = frozenset({"true", "yes", "on"})
_FALSE: Final = frozenset({"false", "no", "off"})

# Keys a Rundeck export carries that only its server uses: accepted, ignored.
_UI_KEYS: Final = frozenset(
    {
        "defaultTab",
        "executionEnabled",
        "loglevel",
        "nodeFilterEditable",
        "nodesSelectedByDefault",
        "multipleExecutions",
        "maxMultipleExecutions",
        "project",
        "href",
        "permalink",
    }
)
_WARN_KEYS: Final = {
    "notification": "ecsexec sends no notifications",
    "notifyAvgDurationThreshold": "ecsexec sends no notifications",
}
_UNSUPPORTED: Final = {
    "timeout": "job timeouts are not supported; use per-command time limits in the steps",
    "retry": "job retries are not supported",
    "loglimit": "log limits are not supported (history keeps a bounded log per node)",
    "loglimitAction": "log limits are not supported",
    "loglimitStatus": "log limits are not supported",
    "orchestrator": "orchestrators are not supported",
    "type": "plugin steps are not supported (exec, script and jobref are)",
    "nodeStep": "plugin steps are not supported (exec, script and jobref are)",
    "configuration": "plugin steps are not supported (exec, script and jobref are)",
    "valuesUrl": "remote option values are not supported",
    "multivalued": "multi-valued options are not supported",
    "delimiter": "multi-valued options are not supported",
    "multivalueAllSelected": "multi-valued options are not supported",
    "valuesListDelimiter": "multi-valued options are not supported",
    "storagePath": "key-storage defaults for options are not supported",
    "isDate": "date options are not supported",
    "dateFormat": "date options are not supported",
    "optionType": "file options are not supported",
    "include": "the deprecated include/exclude maps are not supported; write filter:",
    "exclude": "the deprecated include/exclude maps are not supported; write filter:",
    "importOptions": "importOptions is not supported; pass options in args",
    "childNodes": "childNodes is not supported",
}


class _Problems(Exception):
    """Stops parsing one job after errors were recorded."""


class _Parser:
    def __init__(self, file: str) -> None:
        self.file = file
        self.errors: list[str] = []
        self.warnings: list[str] = []

    # --- reporting ----------------------------------------------------------------------------

    def where(self, node: Node, extra_lines: int = 0) -> Where:
        return Where(self.file, node.start_mark.line + 1 + extra_lines)

    def error(self, node: Node, message: str, extra_lines: int = 0) -> None:
        self.errors.append(f"{self.where(node, extra_lines)}: {message}")

    def fail(self, node: Node, message: str) -> _Problems:
        self.error(node, message)
        return _Problems()

    # --- typed access -------------------------------------------------------------------------

    def mapping(
        self,
        node: Node,
        what: str,
        allowed: frozenset[str],
        *,
        ignored: frozenset[str] = frozenset(),
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what}: expected a mapping, got {_kind(node)}")
        result: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.fail(key_node, f"{what}: keys must be plain words")
            key = str(key_node.value)
            if key in result:
                raise self.fail(key_node, f"{what}: duplicate key {key!r}")
            if key in ignored:
                continue
            if key in _WARN_KEYS and key not in allowed:
                self.warnings.append(f"{self.where(key_node)}: {key} ignored: {_WARN_KEYS[key]}")
                continue
            if key not in allowed:
                if key in _UNSUPPORTED:
                    raise self.fail(
                        key_node, f"{what}: {key} is not supported: {_UNSUPPORTED[key]}"
                    )
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                known = ", ".join(sorted(allowed))
                raise self.fail(
                    key_node, f"{what}: unknown key {key!r}{suggestion} (known: {known})"
                )
            result[key] = (key_node, value_node)
        return result

    def string(self, node: Node, what: str, *, null: str | None = "") -> str:
        if isinstance(node, ScalarNode):
            if node.tag == _NULL and node.style is None and node.value in ("", "~", "null"):
                if null is None:
                    raise self.fail(node, f"{what}: a value is required")
                return null
            return str(node.value)
        raise self.fail(node, f"{what}: expected text, got {_kind(node)}")

    def boolean(self, node: Node, what: str) -> bool:
        text = self.string(node, what, null="false").strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self.fail(node, f"{what}: expected true or false, got {node.value!r}")

    def integer(self, node: Node, what: str, *, minimum: int = 0) -> int:
        text = self.string(node, what, null=None).strip()
        if not text.isdigit() or int(text) < minimum:
            raise self.fail(node, f"{what}: expected a whole number >= {minimum}, got {text!r}")
        return int(text)

    def strings(self, node: Node, what: str) -> tuple[str, ...]:
        if isinstance(node, SequenceNode):
            return tuple(self.string(item, f"{what} item", null=None) for item in node.value)
        # Rundeck's XML form, and some YAML exports: a comma-separated string.
        text = self.string(node, what)
        return tuple(item.strip() for item in text.split(",") if item.strip())

    def sequence(self, node: Node, what: str) -> list[Node]:
        if isinstance(node, SequenceNode):
            return list(node.value)
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return []
        raise self.fail(node, f"{what}: expected a list, got {_kind(node)}")

    def guarded(self, parse: Callable[[], T]) -> T | None:
        try:
            return parse()
        except _Problems:
            return None

    # --- the document -------------------------------------------------------------------------

    def document(self, text: str) -> JobFile:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except RecursionError:
            # PyYAML composes recursively: 1,000 levels of [ or { exhaust the stack.
            raise JobFileError(f"{self.file}:1: invalid YAML: nested too deeply") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(exc, "problem", None) or str(exc)
            raise JobFileError(f"{self.file}:{line}: invalid YAML: {problem}") from None
        if root is None:
            raise JobFileError(f"{self.file}:1: the file holds no jobs (expected a list of jobs)")
        if not isinstance(root, SequenceNode):
            raise JobFileError(
                f"{self.file}:{root.start_mark.line + 1}: a job file is a list of jobs "
                f"(- name: …), got {_kind(root)}"
            )
        jobs: list[Job] = []
        seen: dict[str, Where] = {}
        for item in root.value:
            job = self.guarded(lambda item=item: self.job(item))  # type: ignore[misc]
            if job is None:
                continue
            if job.path in seen:
                self.error(item, f"job {job.path!r} is defined twice (first at {seen[job.path]})")
            seen.setdefault(job.path, job.where)
            jobs.append(job)
        if not root.value:
            self.errors.append(f"{self.file}:{root.start_mark.line + 1}: the list of jobs is empty")
        if self.errors:
            raise JobFileError("\n".join(self.errors))
        return JobFile(self.file, tuple(jobs), tuple(self.warnings))

    def job(self, node: Node) -> Job:
        keys = self.mapping(
            node,
            "job",
            frozenset(
                {
                    "name",
                    "group",
                    "description",
                    "uuid",
                    "id",
                    "options",
                    "nodefilters",
                    "sequence",
                    "plugins",
                    "schedule",
                    "scheduleEnabled",
                    "timeZone",
                }
            ),
            ignored=_UI_KEYS,
        )
        if "name" not in keys:
            raise self.fail(node, "job: name is required")
        name = self.string(keys["name"][1], "name", null=None).strip()
        if not name:
            raise self.fail(keys["name"][1], "name must not be blank")
        group = self.string(keys["group"][1], "group").strip("/") if "group" in keys else ""
        uuid = ""
        for key in ("uuid", "id"):
            if key in keys:
                value = self.string(keys[key][1], key)
                if uuid and value and value != uuid:
                    raise self.fail(keys[key][1], f"{key} {value!r} differs from uuid {uuid!r}")
                uuid = uuid or value
        if "plugins" in keys:
            self.job_plugins(keys["plugins"][1])
        options = self.options(keys["options"][1]) if "options" in keys else ()
        filter_text: str | None = None
        dispatch = Dispatch()
        if "nodefilters" in keys:
            filter_text, parsed = self.nodefilters(keys["nodefilters"][1])
            dispatch = parsed or dispatch
        if "sequence" not in keys:
            raise self.fail(node, f"job {name!r}: sequence (the steps) is required")
        keepgoing, strategy, steps, log_filters = self.sequence_(keys["sequence"][1])
        schedule = self.schedule(keys) if "schedule" in keys else None
        schedule_enabled = True
        if "scheduleEnabled" in keys:
            schedule_enabled = self.boolean(keys["scheduleEnabled"][1], "scheduleEnabled")
        job = Job(
            name=name,
            group=group,
            description=self.string(keys["description"][1], "description")
            if "description" in keys
            else "",
            uuid=uuid,
            options=options,
            filter=filter_text,
            dispatch=dispatch,
            keepgoing=keepgoing,
            strategy=strategy,
            steps=steps,
            log_filters=log_filters,
            schedule=schedule,
            schedule_enabled=schedule_enabled,
            where=self.where(node),
        )
        self.check_references(job, keys)
        return job

    def schedule(self, keys: dict[str, tuple[Node, Node]]) -> Schedule | None:
        value = keys["schedule"][1]
        if _is_null(value):
            return None
        zone = self.string(keys["timeZone"][1], "timeZone").strip() if "timeZone" in keys else ""
        try:
            return Schedule.parse(_plain(value), str(self.where(value)), timezone=zone)
        except JobFileError as exc:
            self.errors.append(str(exc))
            raise _Problems() from None

    def job_plugins(self, node: Node) -> None:
        keys = self.mapping(node, "plugins", frozenset({"ExecutionLifecycle"}))
        for key, (_, value) in keys.items():
            empty = (isinstance(value, MappingNode) and not value.value) or (
                isinstance(value, ScalarNode) and value.tag == _NULL
            )
            if not empty:
                raise self.fail(
                    value, f"plugins.{key}: execution lifecycle plugins are not supported"
                )

    # --- options ------------------------------------------------------------------------------

    def options(self, node: Node) -> tuple[JobOption, ...]:
        items: list[tuple[Node, str | None]] = []
        if isinstance(node, MappingNode):  # the older form: {name: {definition}}
            for key_node, value_node in node.value:
                items.append((value_node, self.string(key_node, "option name", null=None)))
        else:
            items = [(item, None) for item in self.sequence(node, "options")]
        result: list[JobOption] = []
        names: set[str] = set()
        for item, name in items:
            option = self.guarded(lambda item=item, name=name: self.option(item, name))  # type: ignore[misc]
            if option is None:
                continue
            if option.name in names:
                self.error(item, f"option {option.name!r} is defined twice")
            names.add(option.name)
            result.append(option)
        return tuple(result)

    def option(self, node: Node, name: str | None) -> JobOption:
        if isinstance(node, ScalarNode) and node.tag == _NULL and name is not None:
            return JobOption(name=name, where=self.where(node))
        allowed = {
            "name",
            "description",
            "value",
            "values",
            "enforced",
            "required",
            "regex",
            "secure",
            "valueExposed",
            "label",
            "sortIndex",
            "hidden",
        }
        keys = self.mapping(node, "option", frozenset(allowed))
        if "name" in keys:
            name = self.string(keys["name"][1], "option name", null=None)
        if not name:
            raise self.fail(node, "option: name is required")
        if not OPTION_NAME.fullmatch(name):
            raise self.fail(node, f"option name {name!r}: use letters, digits, '_', '.', '-'")
        what = f"option {name!r}"
        option = JobOption(
            name=name,
            description=self.string(keys["description"][1], "description")
            if "description" in keys
            else "",
            value=self.string(keys["value"][1], f"{what} value", null=None)
            if "value" in keys and not _is_null(keys["value"][1])
            else None,
            values=self.strings(keys["values"][1], f"{what} values") if "values" in keys else (),
            enforced=self.boolean(keys["enforced"][1], "enforced") if "enforced" in keys else False,
            required=self.boolean(keys["required"][1], "required") if "required" in keys else False,
            regex=self.string(keys["regex"][1], f"{what} regex", null=None)
            if "regex" in keys and not _is_null(keys["regex"][1])
            else None,
            secure=self.boolean(keys["secure"][1], "secure") if "secure" in keys else False,
            where=self.where(node),
        )
        if option.regex is not None:
            try:
                pattern = compile_bounded(option.regex)
                matches = not option.value or pattern.fullmatch(option.value)
            except RegexCostError as exc:
                raise self.fail(
                    keys["regex"][1], f"{what}: regex is too costly to evaluate: {exc}"
                ) from None
            except JavaRegexError as exc:
                raise self.fail(keys["regex"][1], f"{what}: invalid regex: {exc}") from None
            if not matches:
                raise self.fail(
                    keys["value"][1], f"{what}: the default does not match /{option.regex}/"
                )
        if option.enforced and not option.values:
            raise self.fail(node, f"{what}: enforced needs a values list")
        if option.enforced and option.value and option.value not in option.values:
            raise self.fail(keys["value"][1], f"{what}: the default is not one of its values")
        return option

    # --- node filters -------------------------------------------------------------------------

    def nodefilters(self, node: Node) -> tuple[str | None, Dispatch | None]:
        keys = self.mapping(node, "nodefilters", frozenset({"filter", "dispatch"}))
        text = None
        if "filter" in keys:
            text = self.string(keys["filter"][1], "filter") or None
            if text is not None:
                self.check_filter(text, keys["filter"][1])
        dispatch = self.dispatch(keys["dispatch"][1]) if "dispatch" in keys else None
        return text, dispatch

    def check_filter(self, text: str, node: Node) -> None:
        # ${…} is expanded at run time; a placeholder keeps the rest checkable now.
        try:
            parse_filter(REFERENCE.sub("x", text))
        except FilterSyntaxError as exc:
            self.error(node, f"filter: {exc}")

    def dispatch(self, node: Node) -> Dispatch:
        keys = self.mapping(
            node,
            "dispatch",
            frozenset(
                {
                    "threadcount",
                    "keepgoing",
                    "excludePrecedence",
                    "rankAttribute",
                    "rankOrder",
                    "successOnEmptyNodeFilter",
                }
            ),
        )
        result = Dispatch()
        if "threadcount" in keys:
            threads = self.integer(keys["threadcount"][1], "threadcount", minimum=1)
            result = _replace(result, threadcount=threads)
        if "keepgoing" in keys:
            result = _replace(result, keepgoing=self.boolean(keys["keepgoing"][1], "keepgoing"))
        if "excludePrecedence" in keys:
            value = self.boolean(keys["excludePrecedence"][1], "excludePrecedence")
            result = _replace(result, exclude_precedence=value)
        if "rankAttribute" in keys:
            attribute = self.string(keys["rankAttribute"][1], "rankAttribute") or "nodename"
            result = _replace(result, rank_attribute=attribute)
        if "rankOrder" in keys:
            order = self.string(keys["rankOrder"][1], "rankOrder") or "ascending"
            if order not in ("ascending", "descending"):
                raise self.fail(keys["rankOrder"][1], "rankOrder: ascending or descending")
            result = _replace(result, rank_order=order)
        if "successOnEmptyNodeFilter" in keys:
            value = self.boolean(keys["successOnEmptyNodeFilter"][1], "successOnEmptyNodeFilter")
            result = _replace(result, success_on_empty=value)
        return result

    # --- the sequence -------------------------------------------------------------------------

    def sequence_(self, node: Node) -> tuple[bool, str, tuple[Step, ...], tuple[LogFilter, ...]]:
        keys = self.mapping(
            node, "sequence", frozenset({"keepgoing", "strategy", "commands", "pluginConfig"})
        )
        keepgoing = (
            self.boolean(keys["keepgoing"][1], "keepgoing") if "keepgoing" in keys else False
        )
        strategy = "node-first"
        if "strategy" in keys:
            strategy = self.string(keys["strategy"][1], "strategy") or "node-first"
            if strategy == "sequential":  # the UI's name for step-first
                strategy = "step-first"
            if strategy not in STRATEGIES:
                raise self.fail(
                    keys["strategy"][1],
                    f"strategy: one of {', '.join(STRATEGIES)}, not {strategy!r}",
                )
        log_filters: tuple[LogFilter, ...] = ()
        if "pluginConfig" in keys:
            log_filters = self.plugin_config(keys["pluginConfig"][1])
        if "commands" not in keys:
            raise self.fail(node, "sequence: commands is required")
        steps = []
        for item in self.sequence(keys["commands"][1], "commands"):
            step = self.guarded(lambda item=item: self.step(item, handler=False))  # type: ignore[misc]
            if step is not None:
                steps.append(step)
        if not keys["commands"][1].value:
            raise self.fail(keys["commands"][1], "sequence: commands must not be empty")
        return keepgoing, strategy, tuple(steps), log_filters

    def plugin_config(self, node: Node) -> tuple[LogFilter, ...]:
        keys = self.mapping(node, "pluginConfig", frozenset({"LogFilter", "WorkflowStrategy"}))
        if "WorkflowStrategy" in keys:
            strategies = self.mapping(
                keys["WorkflowStrategy"][1], "WorkflowStrategy", frozenset(STRATEGIES)
            )
            for _, value in strategies.values():
                if not _is_null(value) and not (isinstance(value, MappingNode) and not value.value):
                    raise self.fail(value, "WorkflowStrategy: strategy settings are not supported")
        if "LogFilter" in keys:
            return self.log_filters(keys["LogFilter"][1])
        return ()

    def script_file(self, node: Node) -> str:
        """A scriptfile path, relative to the job file; it must exist now (it is read
        when the step runs)."""
        text = self.string(node, "scriptfile", null=None)
        if not text.strip():
            raise self.fail(node, "scriptfile: the path is empty")
        path = Path(self.file).parent / Path(text).expanduser()
        if not path.is_file():
            raise self.fail(node, f"scriptfile: no such file: {path}")
        return str(path.resolve())

    def script_url(self, node: Node) -> str:
        text = self.string(node, "scripturl", null=None).strip()
        scheme, _, rest = text.partition("://")
        if scheme.lower() not in ("http", "https") or not rest:
            raise self.fail(node, f"scripturl: {redact_url(text)!r} is not an http or https URL")
        return text

    def step(self, node: Node, *, handler: bool) -> Step:
        allowed = {
            "exec",
            "script",
            "scriptfile",
            "scripturl",
            "args",
            "scriptInterpreter",
            "interpreterArgsQuoted",
            "fileExtension",
            "expandTokenInScriptFile",
            "jobref",
            "description",
            "plugins",
        }
        allowed.add("keepgoingOnSuccess" if handler else "errorhandler")
        what = "errorhandler" if handler else "command"
        keys = self.mapping(node, what, frozenset(allowed))
        kinds = [k for k in ("exec", "script", "scriptfile", "scripturl", "jobref") if k in keys]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            raise self.fail(
                node,
                f"{what}: needs exactly one of exec, script, scriptfile, scripturl, jobref "
                f"(found {found})",
            )
        kind = kinds[0]
        if kind not in ("script", "scriptfile", "scripturl"):
            for key in ("args", "scriptInterpreter", "interpreterArgsQuoted"):
                if key in keys and not (kind == "jobref" and key == "args"):
                    raise self.fail(keys[key][0], f"{what}: {key} belongs to script steps")
        fields: dict[str, object] = {"kind": kind, "where": self.where(node)}
        if kind == "exec":
            command = self.string(keys["exec"][1], "exec", null=None)
            if not command.strip():
                raise self.fail(keys["exec"][1], "exec: the command is empty")
            fields["command"] = command
        elif kind in ("script", "scriptfile", "scripturl"):
            fields["kind"] = "script"
            if kind == "script":
                fields["script"] = self.string(keys["script"][1], "script", null=None)
            elif kind == "scriptfile":
                fields["script_file"] = self.script_file(keys["scriptfile"][1])
            else:
                fields["script_url"] = self.script_url(keys["scripturl"][1])
            if "expandTokenInScriptFile" in keys:
                value = self.boolean(keys["expandTokenInScriptFile"][1], "expandTokenInScriptFile")
                fields["expand_file_tokens"] = value
            if "fileExtension" in keys:
                extension = self.string(keys["fileExtension"][1], "fileExtension")
                if "/" in extension or extension.strip(". ") == "":
                    raise self.fail(
                        keys["fileExtension"][1], f"fileExtension: {extension!r} is not one"
                    )
                fields["file_extension"] = extension.lstrip(".")
            if "args" in keys:
                fields["args"] = self.string(keys["args"][1], "args")
            if "scriptInterpreter" in keys:
                fields["interpreter"] = self.string(keys["scriptInterpreter"][1], "interpreter")
            if "interpreterArgsQuoted" in keys:
                value = self.boolean(keys["interpreterArgsQuoted"][1], "interpreterArgsQuoted")
                fields["interpreter_args_quoted"] = value
        else:
            fields["jobref"] = self.jobref(keys["jobref"][1])
            if "args" in keys:  # Rundeck also accepts args beside the jobref map
                ref = fields["jobref"]
                assert isinstance(ref, JobRef)
                fields["jobref"] = _replace(ref, args=self.string(keys["args"][1], "args"))
        if "description" in keys:
            fields["description"] = self.string(keys["description"][1], "description")
        if "plugins" in keys:
            plugins = self.mapping(keys["plugins"][1], "plugins", frozenset({"LogFilter"}))
            if "LogFilter" in plugins:
                fields["log_filters"] = self.log_filters(plugins["LogFilter"][1])
        if "errorhandler" in keys:
            on_error = self.step(keys["errorhandler"][1], handler=True)
            node_step = kind != "jobref" or bool(getattr(fields["jobref"], "node_step", False))
            if on_error.node_step != node_step:
                raise self.fail(
                    keys["errorhandler"][1],
                    "errorhandler: a node step (exec, script, jobref with nodeStep) needs a "
                    "node-step handler, and a workflow jobref a workflow jobref",
                )
            fields["errorhandler"] = on_error
        if "keepgoingOnSuccess" in keys:
            value = self.boolean(keys["keepgoingOnSuccess"][1], "keepgoingOnSuccess")
            fields["keepgoing_on_success"] = value
        return Step(**fields)  # type: ignore[arg-type]

    def jobref(self, node: Node) -> JobRef:
        keys = self.mapping(
            node,
            "jobref",
            frozenset({"name", "group", "uuid", "args", "nodeStep", "nodefilters", "project"}),
            ignored=frozenset({"useName", "failOnDisable", "ignoreNotifications"}),
        )
        if "project" in keys and self.string(keys["project"][1], "project"):
            raise self.fail(keys["project"][1], "jobref: other projects are not supported")
        name = self.string(keys["name"][1], "jobref name") if "name" in keys else ""
        uuid = self.string(keys["uuid"][1], "jobref uuid") if "uuid" in keys else ""
        if not name and not uuid:
            raise self.fail(node, "jobref: name (or uuid) is required")
        ref = JobRef(
            name=name,
            group=self.string(keys["group"][1], "group").strip("/") if "group" in keys else "",
            uuid=uuid,
            args=self.string(keys["args"][1], "args") if "args" in keys else "",
            node_step=self.boolean(keys["nodeStep"][1], "nodeStep")
            if "nodeStep" in keys
            else False,
        )
        if "nodefilters" in keys:
            text, dispatch = self.nodefilters(keys["nodefilters"][1])
            ref = _replace(ref, filter=text, dispatch=dispatch)
        return ref

    def log_filters(self, node: Node) -> tuple[LogFilter, ...]:
        result = []
        for item in self.sequence(node, "LogFilter"):
            keys = self.mapping(item, "LogFilter", frozenset({"type", "config"}))
            kind = self.string(keys["type"][1], "type", null=None) if "type" in keys else ""
            if kind != "key-value-data":
                raise self.fail(
                    item, f"LogFilter: type {kind!r} is not supported (key-value-data is)"
                )
            config: dict[str, tuple[Node, Node]] = {}
            if "config" in keys and not _is_null(keys["config"][1]):
                config = self.mapping(
                    keys["config"][1],
                    "key-value-data config",
                    frozenset(
                        {
                            "regex",
                            "name",
                            "logData",
                            "invalidKeyPattern",
                            "replaceFilteredResult",
                            "invalidCharactersReplacement",
                            "matchSubstrings",
                        }
                    ),
                )
            result.append(self.key_value(item, config))
        return tuple(result)

    def key_value(self, node: Node, config: dict[str, tuple[Node, Node]]) -> LogFilter:
        def text(key: str, default: str) -> str:
            return self.string(config[key][1], key) if key in config else default

        def flag(key: str) -> bool:
            return self.boolean(config[key][1], key) if key in config else False

        regex = text("regex", KEY_VALUE_PATTERN) or KEY_VALUE_PATTERN
        name = text("name", "") or None
        invalid = text("invalidKeyPattern", INVALID_KEY_PATTERN)
        for key, pattern in (("regex", regex), ("invalidKeyPattern", invalid)):
            if not pattern:
                continue
            try:
                compiled = compile_java(pattern)
            except JavaRegexError as exc:
                where = config.get(key, (node, node))[1]
                raise self.fail(where, f"{key}: invalid regex: {exc}") from None
            if key == "regex" and compiled.groups < 1:
                raise self.fail(config.get(key, (node, node))[1], "regex: needs a capture group")
            if key == "regex" and compiled.groups == 1 and not name:
                raise self.fail(node, "key-value-data: a regex with one group needs a name")
        replacement = "_"
        if flag("replaceFilteredResult"):
            replacement = text("invalidCharactersReplacement", "")
        return LogFilter(
            regex=regex,
            name=name,
            log_data=flag("logData"),
            invalid_key_pattern=invalid,
            replacement=replacement,
            match_substrings=flag("matchSubstrings"),
            where=self.where(node),
        )

    # --- references ---------------------------------------------------------------------------

    def check_references(self, job: Job, keys: dict[str, tuple[Node, Node]]) -> None:
        """Every ``${…}`` and ``@…@`` must name a known context, option and job key."""
        sequence = keys["sequence"][1]
        commands = _child(sequence, "commands")
        if job.filter is not None and "nodefilters" in keys:
            filter_node = _child(keys["nodefilters"][1], "filter")
            self.check_text(job, job.filter, filter_node or keys["nodefilters"][1])
        items = commands.value if isinstance(commands, SequenceNode) else []
        for step, item in zip(job.steps, items, strict=False):
            self.check_step(job, step, item)

    def check_step(self, job: Job, step: Step, node: Node) -> None:
        texts = {
            "exec": step.command,
            "args": step.args,
            "scriptInterpreter": step.interpreter,
        }
        for key, text in texts.items():
            if text:
                self.check_text(job, text, _child(node, key) or node)
        if step.script:
            self.check_text(job, step.script, _child(node, "script") or node, tokens=True)
        if step.jobref is not None:
            ref_node = _child(node, "jobref") or node
            self.check_text(job, step.jobref.args, _child(ref_node, "args") or ref_node)
            if step.jobref.filter:
                self.check_text(job, step.jobref.filter, ref_node)
        if step.errorhandler is not None:
            self.check_step(job, step.errorhandler, _child(node, "errorhandler") or node)

    def check_text(self, job: Job, text: str, node: Node, *, tokens: bool = False) -> None:
        found: list[Reference] = list(references(text))
        if tokens:
            found = list(references(text, tokens=True))
        for ref in found:
            problem = reference_problem(ref, job)
            if problem is not None:
                self.error(node, problem, _line_offset(node, text, ref.start))


def _child(node: Node, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                return value_node  # type: ignore[no-any-return]
    return None


def _line_offset(node: Node, text: str, offset: int) -> int:
    """Lines from ``node``'s first line to ``offset`` in its text (block scalars start below)."""
    lines = text.count("\n", 0, offset)
    if isinstance(node, ScalarNode) and node.style in ("|", ">"):
        lines += 1
    return lines


def _plain(node: Node, depth: int = 0) -> object:
    """A YAML node as plain data, scalars as written (strings), nulls as None.

    Below ``_PLAIN_DEPTH`` levels (a schedule has two; an alias can make a loop) a node is
    replaced by a marker string, which the schedule's own checks then refuse by name.
    """
    if depth > _PLAIN_DEPTH:
        return "<nested too deeply>"
    if isinstance(node, MappingNode):
        return {str(_plain(k, depth + 1)): _plain(v, depth + 1) for k, v in node.value}
    if isinstance(node, SequenceNode):
        return [_plain(item, depth + 1) for item in node.value]
    return None if _is_null(node) else str(node.value)


_PLAIN_DEPTH: Final = 4


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL and node.style is None


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"{node.value!r}" if node.value != "" else "nothing"


def _replace(obj: T, **changes: object) -> T:
    return replace(obj, **changes)  # type: ignore[type-var]


def parse_jobs(text: str, file: str = "<jobs>") -> JobFile:
    """Parse a job file's text; raises :class:`JobFileError` listing every problem."""
    return _Parser(file).document(text)
