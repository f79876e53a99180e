"""Parses PowerShell scripts with tree-sitter-powershell and checks what a parser can check.

Input (stdin): {"scripts": {"<name>": "<script text>", ...}}. For every script:

* the parse has no ERROR and no MISSING node (a syntax error Windows PowerShell would refuse);
* every command it calls is a function the script defines or one of COMMANDS below;
* every named parameter given to one of COMMANDS is one that command has (or a common one).

COMMANDS lists the Windows PowerShell 5.1 cmdlets (core, ActiveDirectory, LocalAccounts) and
native programs the connector's scripts may call, each with the parameters they may use. It is
written from Microsoft's cmdlet reference, not generated from a Windows host: a check against
typos and against calling what we did not mean to, not proof that a cmdlet behaves as hoped.

Prints "ok" and exits 0 when every script passes; otherwise prints one line per problem
("<name>:<line>:<column>: <problem>") and exits 1. Exits 3 if a package is missing.
"""
import json
import sys

try:
    import tree_sitter
    import tree_sitter_powershell
except ImportError as e:
    sys.stderr.write(
        f"missing Python package ({e}); install it with "
        "`.venv/bin/pip install 'tree-sitter-powershell[core]==0.26.4'` (scripts/test.sh does this)\n"
    )
    sys.exit(3)

COMMON = {
    "verbose", "debug", "erroraction", "warningaction", "informationaction", "errorvariable",
    "warningvariable", "informationvariable", "outvariable", "outbuffer", "pipelinevariable",
    "whatif", "confirm",
}

LOCAL_PRINCIPAL = {"name", "sid", "inputobject"}

COMMANDS = {
    # Microsoft.PowerShell.Core / Utility / Management / Security
    "Where-Object": {"filterscript", "property", "value"},
    "ForEach-Object": {"process", "begin", "end", "membername"},
    "Select-Object": {"first", "last", "skip", "property", "expandproperty", "unique"},
    "Sort-Object": {"property", "unique", "descending"},
    "Out-Null": {"inputobject"},
    "ConvertFrom-Json": {"inputobject"},
    "ConvertTo-Json": {"inputobject", "depth", "compress"},
    "ConvertTo-SecureString": {"string", "asplaintext", "force", "key", "securekey"},
    "Import-Module": {"name", "force", "global", "minimumversion"},
    "Remove-Variable": {"name", "scope", "force"},
    "Set-StrictMode": {"version", "off"},
    "New-Object": {"typename", "argumentlist", "property"},
    "Join-Path": {"path", "childpath"},
    "Test-Path": {"path", "literalpath", "pathtype"},
    "Get-Item": {"path", "literalpath"},
    "New-Item": {"path", "name", "itemtype", "value", "force"},
    "New-ItemProperty": {"path", "literalpath", "name", "value", "propertytype", "force"},
    "Remove-ItemProperty": {"path", "literalpath", "name", "force"},
    "Remove-Item": {"path", "literalpath", "force", "recurse"},
    "Get-Process": {"name", "id", "includeusername"},
    # ActiveDirectory
    "Get-ADDomain": {"identity", "server", "current"},
    "Get-ADUser": {"filter", "identity", "ldapfilter", "properties", "searchbase", "server"},
    "Get-ADGroup": {"filter", "identity", "ldapfilter", "properties", "searchbase", "server"},
    "New-ADUser": {
        "name", "samaccountname", "description", "accountpassword", "enabled",
        "accountexpirationdate", "cannotchangepassword", "passwordneverexpires", "path",
        "userprincipalname", "server",
    },
    "Set-ADUser": {"identity", "accountexpirationdate", "description", "enabled", "server"},
    "Set-ADAccountPassword": {"identity", "reset", "newpassword", "oldpassword", "server"},
    "Enable-ADAccount": {"identity", "server"},
    "Disable-ADAccount": {"identity", "server"},
    "Remove-ADUser": {"identity", "server"},
    "Add-ADGroupMember": {"identity", "members", "server"},
    "Remove-ADGroupMember": {"identity", "members", "server"},
    # Microsoft.PowerShell.LocalAccounts
    "Get-LocalUser": {"name", "sid"},
    "New-LocalUser": {
        "name", "description", "password", "nopassword", "accountexpires", "accountneverexpires",
        "disabled", "fullname", "passwordneverexpires", "usermaynotchangepassword",
    },
    "Set-LocalUser": LOCAL_PRINCIPAL | {
        "password", "accountexpires", "accountneverexpires", "description", "fullname",
        "passwordneverexpires", "usermaychangepassword",
    },
    "Enable-LocalUser": LOCAL_PRINCIPAL,
    "Disable-LocalUser": LOCAL_PRINCIPAL,
    "Remove-LocalUser": LOCAL_PRINCIPAL,
    "Get-LocalGroup": {"name", "sid"},
    "Add-LocalGroupMember": {"group", "name", "sid", "member"},
    "Remove-LocalGroupMember": {"group", "name", "sid", "member"},
    # Native programs: arguments are not checked.
    "logoff.exe": None,
}
KNOWN = {name.lower(): (name, params) for name, params in COMMANDS.items()}


def text(src, node):
    return src[node.start_byte:node.end_byte].decode("utf-8", "replace")


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def check(name, script, parser):
    src = script.encode("utf-8")
    tree = parser.parse(src)
    problems = []

    def report(node, message):
        line, column = node.start_point
        problems.append(f"{name}:{line + 1}:{column + 1}: {message}")

    nodes = list(walk(tree.root_node))
    for node in nodes:
        if node.type == "ERROR":
            report(node, f"syntax error at {text(src, node)[:60]!r}")
        elif node.is_missing:
            report(node, f"syntax error: missing {node.type!r}")
    if tree.root_node.has_error and not problems:
        report(tree.root_node, "syntax error")

    defined = {text(src, n).lower() for n in nodes if n.type == "function_name"}
    for node in nodes:
        if node.type != "command":
            continue
        name_node = node.child_by_field_name("command_name")
        if name_node is None:
            name_node = next((c for c in walk(node) if c.type == "command_name"), None)
        if name_node is None:
            report(node, "a command whose name is not a literal")
            continue
        command = text(src, name_node)
        if command.lower() in defined:
            continue
        if command.lower() not in KNOWN:
            report(name_node, f"unknown command {command!r}")
            continue
        _, params = KNOWN[command.lower()]
        if params is None:
            continue
        elements = node.child_by_field_name("command_elements")
        for element in (elements.children if elements is not None else []):
            if element.type != "command_parameter":
                continue
            param = text(src, element).lstrip("-").split(":", 1)[0].lower()
            if param not in params and param not in COMMON:
                report(element, f"{command} has no parameter -{param}")
    return problems


def main():
    request = json.load(sys.stdin)
    scripts = request["scripts"]
    if not scripts:
        print("no scripts given")
        sys.exit(1)
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
    problems = []
    for name, script in sorted(scripts.items()):
        problems.extend(check(name, script, parser))
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"checked {len(scripts)} scripts")
    print("ok")


main()
