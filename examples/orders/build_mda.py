"""Build examples/orders/orders-1.4.2.mda: a small, deterministic stand-in for an MxBuild package.

The layout and metadata.json follow what MxBuild writes for a Mendix 10.24 app (compare the real
ones in tests/fixtures/metadata/). The compiled model and the jar are placeholders: nothing here runs a
real Mendix runtime, but everything that reads the package (inspect, plan, the targets) sees a
realistic app. Run `python examples/orders/build_mda.py`; the output is byte-for-byte reproducible.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "orders-1.4.2.mda"
# fixed timestamps (and sorted, fixed attributes) make the archive reproducible
STAMP = (2026, 1, 15, 9, 30, 0)

ADMIN = "8dd52bfa-6d7e-453b-b506-303c0a3d9567"
ORDER_MANAGER = "3b0e7c2a-5f4d-4c1e-9a8b-6d2f1e0c7b54"
CUSTOMER = "53f5d6fa-6da9-4a71-b011-454ec052cce8"
AUDITOR = "c7a19e40-2b3d-4f8e-8c61-0e5d9b7a4f21"

METADATA = {
    "RuntimeVersion": "10.24.15.93102",
    "ProjectID": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f",
    "ProjectName": "Orders",
    "ModelVersion": "1.4.2.1234",
    "Description": "Order intake, invoicing and fulfilment.",
    "AdminUser": "MxAdmin",
    "AdminRole": ADMIN,
    "JavaVersion": 21,
    "Roles": {
        ADMIN: {"Name": "Administrator", "ManageableRoles": [ADMIN, ORDER_MANAGER, CUSTOMER, AUDITOR]},
        ORDER_MANAGER: {"Name": "OrderManager", "ManageableRoles": [CUSTOMER]},
        CUSTOMER: {"Name": "Customer"},
        AUDITOR: {"Name": "Auditor", "ManageableRoles": []},
    },
    "Constants": [
        {"Name": "Orders.ApiUrl", "Type": "String", "Description": "Base URL of the fulfilment API.", "DefaultValue": "https://api.example.test"},
        {"Name": "Orders.PageSize", "Type": "Integer", "Description": "Rows per page in order overviews.", "DefaultValue": "50"},
        {"Name": "Orders.EnableAuditTrail", "Type": "Boolean", "Description": "Record every change to an order.", "DefaultValue": "true"},
        {"Name": "Orders.VatRate", "Type": "Decimal", "Description": "VAT applied to invoices.", "DefaultValue": "0.21"},
        # best guess at how MxBuild serialises a DateTime default (ISO 8601, UTC)
        {"Name": "Orders.CutoffDate", "Type": "DateTime", "Description": "Orders before this date are archived.", "DefaultValue": "2026-01-01T00:00:00Z"},
        {
            "Name": "CommunityCommons.enableReleaseLockEvent",
            "Type": "Boolean",
            "Description": "If this constant is set to 'true', old locks will be released automatically.",
            "DefaultValue": "True",
        },
        # a secret: empty in the model, must be supplied per environment and never printed
        {
            "Name": "Encryption.EncryptionKey",
            "Type": "String",
            "Description": "This key will be used to encrypt and decrypt values.\r\nThe length of this key must be 32 characters.",
            "DefaultValue": "",
        },
        {"Name": "Encryption.EncryptionPrefix", "Type": "String", "Description": "Prefix for stored encrypted values.", "DefaultValue": "{AES3}"},
    ],
    "ScheduledEvents": [
        {"Name": "CommunityCommons.releaseOldLocks", "Description": "This event releases locks of expired sessions automatically. "},
        {"Name": "Orders.SE_CloseStaleOrders", "Description": "Closes orders without activity for 30 days."},
        {"Name": "Orders.SE_SendInvoices", "Description": "Sends the invoices of shipped orders every night."},
    ],
    "Languages": ["en_US", "nl_NL"],
    "Configuration": {
        "SourceDatabaseType": "HSQLDB",
        "SourceDatabaseName": "default",
        "SourceBuiltInDatabasePath": "model/sampledata/data/database",
    },
    "RequestHandlers": [
        {"Name": "/api/", "DefaultEnabled": True, "MatchExactly": False},
        {"Name": "/rest/", "DefaultEnabled": True, "MatchExactly": False},
        {"Name": "/odata/", "DefaultEnabled": True, "MatchExactly": False},
        {"Name": "/ws/", "DefaultEnabled": False, "MatchExactly": False},
        {"Name": "/p/", "DefaultEnabled": False, "MatchExactly": False},
        {"Name": "/xas/", "DefaultEnabled": True, "MatchExactly": True},
        {"Name": "/link/", "DefaultEnabled": True, "MatchExactly": False},
    ],
}

DEPENDENCIES = {
    "dependencies": [
        {"name": "CommunityCommons", "version": "10.2.0"},
        {"name": "Encryption", "version": "5.0.1"},
        {"name": "com.google.guava:guava", "version": "33.2.1-jre"},
    ]
}

INDEX_HTML = """<!doctype html>
<html>
<head>
    <meta charset="utf-8">
    <title>Orders</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <link rel="stylesheet" href="theme.compiled.css?{{cachebust}}">
</head>
<body dir="ltr">
    <div id="content"></div>
    <script src="dist/index.js?{{cachebust}}" type="module"></script>
</body>
</html>
"""

LOGIN_HTML = """<!doctype html>
<html>
<head><meta charset="utf-8"><title>Orders - sign in</title>
<link rel="stylesheet" href="theme.compiled.css"></head>
<body>
<form id="loginForm" method="post" action="/xas/">
  <label>User name <input id="usernameInput" name="username" autocomplete="username"></label>
  <label>Password <input id="passwordInput" name="password" type="password" autocomplete="current-password"></label>
  <button id="loginButton" type="submit">Sign in</button>
</form>
</body>
</html>
"""

INDEX_JS = """// placeholder for the Mendix 10 client bundle
import("./mendix.js").then(({ startApp }) => startApp({ remotebase: "/" }));
"""

THEME_CSS = """:root{--brand-primary:#264ae5;--font-size-default:14px}
body{font-family:"Open Sans",sans-serif;font-size:var(--font-size-default)}
.order-status--shipped{color:#3cb33d}.order-status--stale{color:#e33f4e}
"""


def _jar() -> bytes:
    """A tiny but valid jar standing in for model/bundles/project.jar."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as jar:
        for name, data in [
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\r\nCreated-By: mxinfra example\r\n\r\n"),
            ("orders/proxies/Order.class", b"\xca\xfe\xba\xbe" + bytes(60)),
        ]:
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            jar.writestr(info, data)
    return buf.getvalue()


def members(model_version: str = METADATA["ModelVersion"]) -> list[tuple[str, bytes]]:
    """The archive's members, in MxBuild's order (model first); another `model_version` is the app's next release."""
    return [
        ("model/metadata.json", json.dumps({**METADATA, "ModelVersion": model_version}, indent=2).encode() + b"\n"),
        # a placeholder for the compiled model: a header and deterministic filler
        ("model/model.mdp", b"MXMDP\x00\x0a\x18" + bytes((i * 37) % 251 for i in range(2048))),
        ("model/bundles/project.jar", _jar()),
        ("model/dependencies.json", json.dumps(DEPENDENCIES, indent=2).encode() + b"\n"),
        ("model/i18n/nl_NL.properties", b"orders.title=Bestellingen\n"),
        ("web/index.html", INDEX_HTML.encode()),
        ("web/login.html", LOGIN_HTML.encode()),
        ("web/dist/index.js", INDEX_JS.encode()),
        ("web/theme.compiled.css", THEME_CSS.encode()),
    ]


def build(output: Path = OUTPUT, model_version: str = METADATA["ModelVersion"]) -> Path:
    """Write the example MDA deterministically (at `model_version`: another release) and return its path."""
    with zipfile.ZipFile(output, "w") as zf:
        for name, data in members(model_version):
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
    return output


if __name__ == "__main__":
    path = build()
    print(f"wrote {path} ({path.stat().st_size} bytes)")
