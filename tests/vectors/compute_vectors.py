"""Recompute every signing vector with the official SDKs, offline, and print them as JSON.

The Rust signer tests read their inputs and expected outputs from expected.json,
and check.sh diffs this script's output against that file, so the Rust signers
and the official SDKs can never drift apart. Clock, nonce and user agent are
pinned and the HTTP layer is stubbed: nothing here touches the network.

Vectors (see the team's provider notes): A1/A2 Alibaba RPC HMAC-SHA1,
B1-B4 Alibaba ACS3-HMAC-SHA256, C1-C3 Baidu bce-auth-v1, plus encoding cases.
"""

import calendar
import hashlib
import hmac
import importlib.metadata as metadata
import json
import sys
import time
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

PINNED = (
    "alibabacloud-tea-openapi",
    "alibabacloud-ecs20140526",
    "alibabacloud-openapi-util",
    "darabonba-core",
    "aliyun-python-sdk-core",
    "aliyun-python-sdk-ecs",
    "bce-python-sdk",
)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
FIXED_TIME = "2025-01-02T03:04:05Z"
FIXED_NONCE = "3a0a3b1c5d6e7f8091a2b3c4d5e6f708"
TOKEN = "k8s-sgr-3f1c2a9e-6b7d-4c1e-9a55-0e2f4b6d8a10"


class Captured(Exception):
    """Raised by the stubbed transports once the request has been recorded."""


def pairs(mapping):
    """A dict as [[name, value], ...] strings, sorted by name for a stable file."""
    return [[str(k), str(v)] for k, v in sorted(mapping.items())]


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


# --- Alibaba RPC HMAC-SHA1 (SignatureVersion 1.0) ----------------------------

def alibaba_rpc():
    from aliyunsdkcore.auth.composer import rpc_signature_composer as rpc
    from aliyunsdkcore.utils import parameter_helper
    from alibabacloud_openapi_util.client import Client as OpenApiUtil
    from alibabacloud_tea_openapi.utils import Utils as TeaUtils

    compose = getattr(rpc, "__compose_string_to_sign")
    sign = getattr(rpc, "__get_signature")

    # A1: the documentation example (DescribeDedicatedHosts, GET).
    a1_params = {
        "AccessKeyId": "testid", "Action": "DescribeDedicatedHosts", "Format": "JSON",
        "RegionId": "cn-beijing", "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "edb2b34af0af9a6d14deaf7c1a5315eb", "SignatureVersion": "1.0",
        "Timestamp": "2023-03-13T08:34:30Z", "Version": "2014-05-26",
    }
    a1_sts = compose("GET", a1_params)
    a1_sig = sign(a1_sts, "testsecret")
    for other in (OpenApiUtil.get_rpcsignature(a1_params, "GET", "testsecret"),
                  TeaUtils.get_rpcsignature(a1_params, "GET", "testsecret")):
        assert other == a1_sig, (other, a1_sig)

    # A2: RevokeSecurityGroup built by the legacy ECS request class, signed as POST.
    from aliyunsdkecs.request.v20140526.RevokeSecurityGroupRequest import RevokeSecurityGroupRequest

    parameter_helper.get_uuid = lambda: FIXED_NONCE
    parameter_helper.get_iso_8061_date = lambda: FIXED_TIME
    req = RevokeSecurityGroupRequest()
    req.set_accept_format("JSON")
    req.set_method("POST")
    req.set_SecurityGroupId("sg-bp67acfmxazb4p0000")
    req.set_ClientToken(TOKEN)
    req.set_Permissions([{
        "IpProtocol": "TCP", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8",
        "Policy": "accept", "Priority": "1", "NicType": "intranet",
        "Description": "managed by sg-operator",
    }])
    url = req.get_url("cn-hangzhou", "testid", "testsecret")
    wire = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    a2_sig = wire.pop("Signature")
    assert OpenApiUtil.get_rpcsignature(wire, "POST", "testsecret") == a2_sig
    return {
        "A1": {"method": "GET", "secret": "testsecret", "params": pairs(a1_params),
               "string_to_sign": a1_sts, "signature": a1_sig},
        "A2": {"method": "POST", "secret": "testsecret", "params": pairs(wire),
               "string_to_sign": req.string_to_sign, "signature": a2_sig},
    }


# --- Alibaba ACS3-HMAC-SHA256 -----------------------------------------------

def parse_acs3(authorization):
    fields = dict(f.split("=", 1) for f in authorization.split(" ", 1)[1].split(","))
    return fields["SignedHeaders"].split(";"), fields["Signature"]


def acs3_vector(method, path, query, headers, ak, secret, authorization):
    from alibabacloud_tea_openapi.utils import get_canonical_query_string, get_canonicalized_headers

    canon_headers, signed = get_canonicalized_headers(headers)
    canonical = (f"{method}\n{path}\n{get_canonical_query_string(query)}\n"
                 f"{canon_headers}\n{signed}\n{EMPTY_SHA256}")
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    signature = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    declared, declared_sig = parse_acs3(authorization)
    assert declared == signed.split(";") and declared_sig == signature, authorization
    return {
        "access_key_id": ak, "secret": secret, "method": method, "path": path,
        "query": pairs(query), "headers": pairs(headers), "signed_headers": declared,
        "payload_sha256": EMPTY_SHA256, "canonical_request": canonical,
        "string_to_sign": string_to_sign, "signature": signature, "authorization": authorization,
    }


def alibaba_acs3():
    import darabonba.core
    from alibabacloud_ecs20140526 import models as ecs_models
    from alibabacloud_ecs20140526.client import Client as EcsClient
    from alibabacloud_openapi_util.client import Client as OpenApiUtil
    from alibabacloud_tea_openapi import utils_models as open_api_models
    from alibabacloud_tea_openapi.utils import Utils
    from darabonba.runtime import RuntimeOptions

    def sdk_authorization(method, path, query, headers, ak, secret):
        req = SimpleNamespace(method=method, pathname=path, query=query, headers=headers)
        auth = Utils.get_authorization(req, "ACS3-HMAC-SHA256", EMPTY_SHA256, ak, secret)
        assert auth == OpenApiUtil.get_authorization(req, "ACS3-HMAC-SHA256", EMPTY_SHA256, ak, secret)
        return auth

    # B1: the documentation's RunInstances example.
    b1_query = {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"}
    b1_headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com", "x-acs-action": "RunInstances",
        "x-acs-content-sha256": EMPTY_SHA256, "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d", "x-acs-version": "2014-05-26",
    }
    b1_auth = sdk_authorization("POST", "/", b1_query, b1_headers, "YourAccessKeyId", "YourAccessKeySecret")
    b1 = acs3_vector("POST", "/", b1_query, b1_headers, "YourAccessKeyId", "YourAccessKeySecret", b1_auth)

    # B2/B4: full requests as the ECS SDK puts them on the wire; the transport is stubbed.
    Utils.get_timestamp = staticmethod(lambda: FIXED_TIME)
    Utils.get_nonce = staticmethod(lambda: FIXED_NONCE)
    Utils.get_user_agent = staticmethod(lambda ua: "sg-operator-test/1.0")
    captured = {}

    def record(request, runtime=None):
        captured["req"] = request
        raise Captured()

    darabonba.core.DaraCore.do_action = staticmethod(record)
    client = EcsClient(open_api_models.Config(
        access_key_id="testid", access_key_secret="testsecret",
        endpoint="ecs.cn-hangzhou.aliyuncs.com", region_id="cn-hangzhou"))
    runtime = RuntimeOptions(autoretry=False, max_attempts=0)

    def send(call, request):
        captured.clear()
        try:
            call(request, runtime)
        except Exception:  # the stub aborts the call once the request is recorded
            pass
        wire = captured["req"]
        headers = {k: v for k, v in wire.headers.items() if k != "Authorization"}
        return wire, headers

    b2_wire, b2_headers = send(client.revoke_security_group_with_options, ecs_models.RevokeSecurityGroupRequest(
        region_id="cn-hangzhou", security_group_id="sg-bp67acfmxazb4p0000", client_token=TOKEN,
        permissions=[ecs_models.RevokeSecurityGroupRequestPermissions(
            ip_protocol="TCP", port_range="22/22", source_cidr_ip="10.0.0.0/8", policy="accept",
            priority="1", nic_type="intranet", description="managed by sg-operator")]))
    assert b2_wire.body is None and b2_headers["x-acs-content-sha256"] == EMPTY_SHA256
    b2 = acs3_vector(b2_wire.method, b2_wire.pathname, b2_wire.query, b2_headers, "testid", "testsecret",
                     b2_wire.headers["Authorization"])

    # B3: the same request signing only host and the x-acs-* headers.
    b3_headers = {k: v for k, v in b2_headers.items()
                  if (k == "host" or k.startswith("x-acs-")) and k != "x-acs-credentials-provider"}
    b3_auth = sdk_authorization("POST", "/", b2_wire.query, b3_headers, "testid", "testsecret")
    b3 = acs3_vector("POST", "/", b2_wire.query, b3_headers, "testid", "testsecret", b3_auth)

    b4_wire, b4_headers = send(
        client.revoke_security_group_egress_with_options,
        ecs_models.RevokeSecurityGroupEgressRequest(
            region_id="cn-hangzhou", security_group_id="sg-bp67acfmxazb4p0000",
            client_token="k8s-sgr-revoke-0001", security_group_rule_id=["sgr-bp1aaaa0001", "sgr-bp1bbbb0002"]))
    b4 = acs3_vector(b4_wire.method, b4_wire.pathname, b4_wire.query, b4_headers, "testid", "testsecret",
                     b4_wire.headers["Authorization"])
    return {"B1": b1, "B2": b2, "B3": b3, "B4": b4}


# --- Baidu bce-auth-v1 --------------------------------------------------------

def epoch(timestamp):
    return calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


def bce_parts(ak, sk, timestamp, method, path, headers, params):
    """Signing key and canonical request from the SDK's own helpers."""
    from baidubce import utils
    from baidubce.auth import bce_v1_signer

    prefix = f"bce-auth-v1/{ak}/{timestamp}/1800".encode()
    key = hmac.new(sk.encode(), prefix, hashlib.sha256).hexdigest()
    canonical = b"\n".join([method, path, utils.get_canonical_querystring(params, True),
                            bce_v1_signer._get_canonical_headers(headers)]).decode()
    signature = hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return key, canonical, signature


def bce_common(ak, sk, timestamp, method, path, headers, params):
    return {
        "access_key_id": ak, "secret": sk, "timestamp": timestamp, "expiration_seconds": 1800,
        "method": text(method), "path": text(path),
        "query": pairs({text(k): text(v) for k, v in params.items()}),
        "headers": pairs({text(k): text(v) for k, v in headers.items()}),
    }


def baidu():
    from baidubce import utils
    from baidubce.auth import bce_v1_signer
    from baidubce.auth.bce_credentials import BceCredentials

    # C1: the documentation's worked example (BOS UploadPart).
    ak, sk, when = "a" * 32, "b" * 32, "2015-04-27T08:23:49Z"
    headers = {b"Host": b"bj.bcebos.com", b"Date": b"Mon, 27 Apr 2015 16:23:49 +0800",
               b"Content-Type": b"text/plain", b"Content-Length": 8,
               b"Content-Md5": b"NFzcPqhviddjRNnSOGo4rw==", b"x-bce-date": when.encode()}
    params = {b"partNumber": 9, b"uploadId": b"a44cc9bab11cbd156984767aad637851"}
    explicit = [b"content-length", b"content-md5", b"content-type", b"host", b"x-bce-date"]
    cred = BceCredentials(ak, sk)
    path = b"/v1/test/myfolder/readme.txt"
    key, canonical, _ = bce_parts(ak, sk, when, b"PUT", path, headers, params)
    c1 = bce_common(ak, sk, when, b"PUT", path, headers, params)
    c1.update(
        signing_key=key, canonical_request=canonical,
        explicit_signed_headers=[text(h) for h in explicit],
        authorization_default=bce_v1_signer.sign(cred, b"PUT", path, headers, params, epoch(when), 1800).decode(),
        authorization_explicit=bce_v1_signer.sign(
            cred, b"PUT", path, headers, params, epoch(when), 1800, explicit).decode(),
    )

    # C2: revokeRule exactly as BccClient sends it; the transport is stubbed, the clock pinned.
    from baidubce.bce_client_configuration import BceClientConfiguration
    from baidubce.http import bce_http_client
    from baidubce.retry.retry_policy import NoRetryPolicy
    from baidubce.services.bcc import bcc_client, bcc_model

    fixed = FIXED_TIME.encode()
    utils.get_canonical_time = lambda timestamp=0: fixed if timestamp == 0 else time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp)).encode()
    captured = {}

    def record(conn, http_method, uri, headers, body, send_buf_size):
        captured.update(method=http_method, uri=uri, headers=dict(headers), body=body)
        raise Captured()

    bce_http_client._send_http_request = record
    bce_http_client._get_connection = lambda *a, **k: None
    config = BceClientConfiguration(credentials=BceCredentials("testak", "testsk"), endpoint="bcc.bj.baidubce.com")
    config.retry_policy = NoRetryPolicy()
    rule = bcc_model.SecurityGroupRuleModel(
        remark="managed by sg-operator", direction="ingress", ethertype="IPv4",
        portRange="22", protocol="tcp", sourceIp="10.0.0.0/8")
    try:
        bcc_client.BccClient(config).revoke_security_group_rule("g-nky7qeom", rule, client_token=TOKEN)
    except Exception:  # the stub aborts the call once the request is recorded
        pass
    path2, _, qs = captured["uri"].partition(b"?")
    params2 = {k.encode(): v.encode() for k, v in parse_qsl(qs.decode(), keep_blank_values=True)}
    wire_headers = {k: v for k, v in captured["headers"].items() if k not in (b"Authorization", b"User-Agent")}
    auth2 = captured["headers"][b"Authorization"].decode()
    key2, canonical2, sig2 = bce_parts("testak", "testsk", FIXED_TIME, captured["method"], path2,
                                       wire_headers, params2)
    assert auth2.endswith("/" + sig2), (auth2, sig2)
    c2 = bce_common("testak", "testsk", FIXED_TIME, captured["method"], path2, wire_headers, params2)
    c2.update(body=text(captured["body"]), signing_key=key2, canonical_request=canonical2,
              signature=sig2, authorization=auth2)

    # C3: the same revoke with the header set and compact body the Go SDK uses.
    body3 = json.dumps({"rule": {"remark": "managed by sg-operator", "direction": "ingress",
                                 "ethertype": "IPv4", "portRange": "22", "protocol": "tcp",
                                 "sourceIp": "10.0.0.0/8"}}, separators=(",", ":")).encode()
    h3 = {b"Host": b"bcc.bj.baidubce.com", b"Content-Type": b"application/json;charset=utf-8",
          b"Content-Length": len(body3), b"x-bce-date": fixed}
    p3 = {b"revokeRule": b"", b"clientToken": TOKEN.encode()}
    path3 = b"/v2/securityGroup/g-nky7qeom"
    _, canonical3, _ = bce_parts("testak", "testsk", FIXED_TIME, b"PUT", path3, h3, p3)
    c3 = bce_common("testak", "testsk", FIXED_TIME, b"PUT", path3, h3, p3)
    c3.update(body=body3.decode(), canonical_request=canonical3,
              authorization=bce_v1_signer.sign(BceCredentials("testak", "testsk"), b"PUT", path3, h3, p3,
                                               epoch(FIXED_TIME), 1800).decode())

    # The documentation's sort example: encoded k=v strings are sorted as strings.
    sort_params = {b"text": b"", b"text1": "测试".encode(), b"text10": b"test"}
    sort = {"query": pairs({text(k): text(v) for k, v in sort_params.items()}),
            "canonical_query": utils.get_canonical_querystring(sort_params, True).decode()}
    return {"C1": c1, "C2": c2, "C3": c3, "bce_query_sort": sort}


# --- Percent-encoding edge cases ------------------------------------------------

def encoding():
    from alibabacloud_tea_openapi.utils import Utils
    from baidubce import utils

    cases = ["a b", "*", "~", "/", "+", "=", "测试", "", "10.0.0.0/8", "A-Z_a.z~0*9 (x)&y",
             "/example/测试 a*b"]
    return [{
        "input": s,
        "alibaba": Utils.get_encode_param(s),
        "baidu": utils.normalize_string(s).decode(),
        "baidu_except_slash": utils.normalize_string(s, False).decode(),
    } for s in cases]


def main():
    out = {"sdk_versions": {p: metadata.version(p) for p in PINNED}}
    out.update(alibaba_rpc())
    out.update(alibaba_acs3())
    out.update(baidu())
    out["encoding"] = encoding()
    json.dump(out, sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
