"""Drives secgroup-fakecloud with the providers' official Python SDKs.

Each SDK authorizes, describes and revokes a rule through the fake cloud,
unchanged except for being pointed at http://127.0.0.1:PORT, and a request
whose signature no longer matches is shown to be refused. Prints one line per
check and a summary; exits 1 if any check failed.

Usage: conformance.py BASE_URL ACCESS_KEY_ID ACCESS_KEY_SECRET
"""

import json
import sys
import traceback
import urllib.request
from urllib.parse import urlsplit

BASE, AK, SK = sys.argv[1], sys.argv[2], sys.argv[3]
HOST = urlsplit(BASE).netloc
PORT = urlsplit(BASE).port
REGION = "cn-hangzhou"
RESULTS = []


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + "/_fake" + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def rules_of(provider, group):
    return admin("GET", f"/rules?provider={provider}&group={group}")


def calls(query=""):
    return admin("GET", "/calls?" + query)


def check(name):
    def register(fn):
        RESULTS.append((name, fn))
        return fn
    return register


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def error_code(exc):
    """The provider error code an SDK exception carries, whatever the SDK."""
    for attr in ("code", "error_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
    getter = getattr(exc, "get_error_code", None)
    return getter() if getter else None


def error_status(exc):
    for attr in ("status_code", "statusCode", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    getter = getattr(exc, "get_http_status", None)
    return getter() if getter else None


def expect_refused(call, code, status=None):
    try:
        call()
    except Exception as exc:  # each SDK has its own exception types
        expect(error_code(exc) == code, f"expected {code}, got {error_code(exc)!r}: {exc}")
        if status is not None:
            expect(error_status(exc) == status, f"expected HTTP {status}, got {error_status(exc)!r}")
        return exc
    raise AssertionError(f"expected {code}, but the call succeeded")


# --- alibabacloud-ecs20140526 + alibabacloud-tea-openapi (V3 by default, V2 on request)

def tea_client(signature_algorithm=None, secret=SK):
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi import utils_models as open_api_models
    config = open_api_models.Config(access_key_id=AK, access_key_secret=secret, endpoint=HOST,
                                    protocol="http", region_id=REGION)
    if signature_algorithm:
        config.signature_algorithm = signature_algorithm
    return Client(config)


def tea_cycle(group, signature_algorithm=None):
    from alibabacloud_ecs20140526 import models
    admin("POST", "/groups", {"provider": "alibaba", "region": REGION, "id": group})
    client = tea_client(signature_algorithm)
    permission = models.AuthorizeSecurityGroupRequestPermissions(
        ip_protocol="TCP", port_range="22/22", source_cidr_ip="10.0.0.0/8", policy="accept",
        priority="1", description="managed by secgroup-operator")
    request = models.AuthorizeSecurityGroupRequest(
        region_id=REGION, security_group_id=group, client_token=f"conformance-{group}",
        permissions=[permission])
    first = client.authorize_security_group(request)
    expect(first.status_code == 200 and first.body.request_id, "authorize answered")
    retry = client.authorize_security_group(request)
    expect(retry.body.request_id == first.body.request_id, "a retry with the token replays the first answer")
    expect(len(rules_of("alibaba", group)) == 1, "exactly one rule after authorize and its retry")

    described = client.describe_security_group_attribute(
        models.DescribeSecurityGroupAttributeRequest(region_id=REGION, security_group_id=group))
    permissions = described.body.permissions.permission
    expect(len(permissions) == 1, f"describe lists the rule, got {len(permissions)}")
    rule = permissions[0]
    expect(rule.security_group_rule_id.startswith("sgr-"), "describe returns the rule id")
    expect((rule.ip_protocol, rule.port_range, rule.source_cidr_ip, rule.policy) ==
           ("TCP", "22/22", "10.0.0.0/8", "Accept"), f"described attributes: {rule.to_map()}")

    revoke = models.RevokeSecurityGroupRequest(
        region_id=REGION, security_group_id=group, client_token=f"conformance-revoke-{group}",
        security_group_rule_id=[rule.security_group_rule_id])
    client.revoke_security_group(revoke)
    expect(rules_of("alibaba", group) == [], "revoke by id removed the rule")
    missing = models.RevokeSecurityGroupRequest(
        region_id=REGION, security_group_id=group, security_group_rule_id=[rule.security_group_rule_id])
    expect_refused(lambda: client.revoke_security_group(missing), "InvalidSecurityGroupRuleId.NotFound", 404)


@check("tea SDK, V3 signature: authorize (and token replay), describe, revoke by id, revoke again")
def tea_v3():
    tea_cycle("sg-tea-v3")


@check("tea SDK, V2 RPC signature: authorize, describe, revoke by id, revoke again")
def tea_v2():
    tea_cycle("sg-tea-v2", signature_algorithm="v2")


@check("tea SDK: ModifySecurityGroupRule changes a rule's description and priority in place")
def tea_modify():
    from alibabacloud_ecs20140526 import models
    group = "sg-tea-modify"
    admin("POST", "/groups", {"provider": "alibaba", "region": REGION, "id": group})
    client = tea_client()
    client.authorize_security_group(models.AuthorizeSecurityGroupRequest(
        region_id=REGION, security_group_id=group,
        permissions=[models.AuthorizeSecurityGroupRequestPermissions(
            ip_protocol="TCP", port_range="443/443", source_cidr_ip="10.0.0.0/8", description="before")]))
    rule_id = rules_of("alibaba", group)[0]["ruleId"]
    client.modify_security_group_rule(models.ModifySecurityGroupRuleRequest(
        region_id=REGION, security_group_id=group, security_group_rule_id=rule_id,
        description="after", priority="5", client_token="conformance-modify"))
    described = client.describe_security_group_attribute(
        models.DescribeSecurityGroupAttributeRequest(region_id=REGION, security_group_id=group))
    rule = described.body.permissions.permission[0]
    expect((rule.security_group_rule_id, rule.description, rule.priority, rule.port_range) ==
           (rule_id, "after", "5", "443/443"), f"modified in place: {rule.to_map()}")
    missing = models.ModifySecurityGroupRuleRequest(
        region_id=REGION, security_group_id=group, security_group_rule_id="sgr-none", description="x")
    expect_refused(lambda: client.modify_security_group_rule(missing), "InvalidSecurityGroupRuleId.NotFound", 404)


@check("tea SDK: a request altered after signing is refused with SignatureDoesNotMatch")
def tea_tampered():
    import darabonba.core
    from alibabacloud_ecs20140526 import models
    admin("POST", "/groups", {"provider": "alibaba", "region": REGION, "id": "sg-tea-tampered"})
    original = darabonba.core.DaraCore.do_action

    def widen_after_signing(request, runtime=None):
        request.query["Permissions.1.SourceCidrIp"] = "0.0.0.0/0"
        return original(request, runtime)

    darabonba.core.DaraCore.do_action = staticmethod(widen_after_signing)
    try:
        request = models.AuthorizeSecurityGroupRequest(
            region_id=REGION, security_group_id="sg-tea-tampered",
            permissions=[models.AuthorizeSecurityGroupRequestPermissions(
                ip_protocol="TCP", port_range="443/443", source_cidr_ip="10.0.0.0/8")])
        expect_refused(lambda: tea_client().authorize_security_group(request), "SignatureDoesNotMatch", 400)
    finally:
        darabonba.core.DaraCore.do_action = staticmethod(original)
    expect(rules_of("alibaba", "sg-tea-tampered") == [], "the tampered request changed nothing")


@check("tea SDK: throttling surfaces as Throttling.User")
def tea_throttled():
    from alibabacloud_ecs20140526 import models
    admin("POST", "/groups", {"provider": "alibaba", "region": REGION, "id": "sg-tea-throttled"})
    admin("PUT", "/faults", {"rules": [{"provider": "alibaba", "throttle": 1.0, "retryAfterMs": 10, "times": 1}]})
    request = models.DescribeSecurityGroupAttributeRequest(region_id=REGION, security_group_id="sg-tea-throttled")
    try:
        expect_refused(lambda: tea_client().describe_security_group_attribute(request), "Throttling.User", 400)
    finally:
        admin("PUT", "/faults", {"rules": []})
    tea_client().describe_security_group_attribute(request)


# --- aliyun-python-sdk-core + aliyun-python-sdk-ecs (legacy, RPC HMAC-SHA1)

def legacy_client(secret=SK):
    from aliyunsdkcore.client import AcsClient
    return AcsClient(AK, secret, REGION, port=PORT, auto_retry=False)


def legacy(request, headers=()):
    request.set_endpoint(urlsplit(BASE).hostname)
    request.set_accept_format("JSON")
    for name, value in headers:
        request.add_header(name, value)
    return request


@check("legacy SDK (aliyunsdkcore): authorize with Permissions, describe, revoke by SecurityGroupRuleIds")
def legacy_cycle():
    from aliyunsdkecs.request.v20140526.AuthorizeSecurityGroupEgressRequest import AuthorizeSecurityGroupEgressRequest
    from aliyunsdkecs.request.v20140526.DescribeSecurityGroupAttributeRequest import DescribeSecurityGroupAttributeRequest
    from aliyunsdkecs.request.v20140526.RevokeSecurityGroupEgressRequest import RevokeSecurityGroupEgressRequest
    group = "sg-legacy"
    admin("POST", "/groups", {"provider": "alibaba", "region": REGION, "id": group})
    client = legacy_client()
    authorize = legacy(AuthorizeSecurityGroupEgressRequest())
    authorize.set_SecurityGroupId(group)
    authorize.set_ClientToken("conformance-legacy-egress")
    authorize.set_Permissions([{"IpProtocol": "UDP", "PortRange": "53/53", "DestCidrIp": "192.168.0.0/16",
                                "Policy": "accept", "Priority": "1", "NicType": "intranet",
                                "Description": "managed by secgroup-operator"}])
    json.loads(client.do_action_with_exception(authorize))

    describe = legacy(DescribeSecurityGroupAttributeRequest())
    describe.set_SecurityGroupId(group)
    describe.set_Direction("egress")
    body = json.loads(client.do_action_with_exception(describe))
    permissions = body["Permissions"]["Permission"]
    expect(len(permissions) == 1 and permissions[0]["DestCidrIp"] == "192.168.0.0/16",
           f"describe lists the egress rule: {permissions}")

    revoke = legacy(RevokeSecurityGroupEgressRequest())
    revoke.set_SecurityGroupId(group)
    revoke.set_SecurityGroupRuleIds([permissions[0]["SecurityGroupRuleId"]])
    client.do_action_with_exception(revoke)
    expect(rules_of("alibaba", group) == [], "revoke by id removed the rule")


@check("legacy SDK: a wrong secret is refused (SignatureDoesNotMatch, which the SDK renames)")
def legacy_wrong_secret():
    from aliyunsdkecs.request.v20140526.DescribeSecurityGroupAttributeRequest import DescribeSecurityGroupAttributeRequest
    describe = legacy(DescribeSecurityGroupAttributeRequest())
    describe.set_SecurityGroupId("sg-legacy")
    # aliyunsdkcore turns a 400 SignatureDoesNotMatch whose "server string to sign" equals its
    # own into InvalidAccessKeySecret, so this also proves the fake's message has that shape.
    expect_refused(lambda: legacy_client(secret="not-the-secret").do_action_with_exception(describe),
                   "InvalidAccessKeySecret", 400)
    expect(calls()[-1]["code"] == "SignatureDoesNotMatch", "the fake answered SignatureDoesNotMatch")


@check("legacy SDK as an Apsara Stack client: flat parameters with x-acs-organizationid")
def legacy_apsara():
    from aliyunsdkecs.request.v20140526.AuthorizeSecurityGroupRequest import AuthorizeSecurityGroupRequest
    from aliyunsdkecs.request.v20140526.RevokeSecurityGroupRequest import RevokeSecurityGroupRequest
    group = "sg-apsara"
    admin("POST", "/groups", {"provider": "apsara", "region": REGION, "id": group})
    client = legacy_client()
    org = [("x-acs-organizationid", "7"), ("x-acs-resourcegroupid", "11")]
    for request_class in (AuthorizeSecurityGroupRequest, RevokeSecurityGroupRequest):
        request = legacy(request_class(), org)
        request.set_SecurityGroupId(group)
        request.set_IpProtocol("tcp")
        request.set_PortRange("3306/3306")
        request.set_SourceCidrIp("10.8.0.0/16")
        client.do_action_with_exception(request)
        if request_class is AuthorizeSecurityGroupRequest:
            rules = rules_of("apsara", group)
            expect(len(rules) == 1 and rules[0]["rule"]["ports"] == {"from": 3306, "to": 3306},
                   f"the rule is in the Apsara store: {rules}")
    expect(rules_of("apsara", group) == [], "the flat revoke removed the rule")
    seen = calls("provider=apsara")[-1]
    expect(seen["headers"].get("x-acs-organizationid") == "7", f"organisation header recorded: {seen['headers']}")


# --- bce-python-sdk (bce-auth-v1)

def bcc_client():
    from baidubce.auth.bce_credentials import BceCredentials
    from baidubce.bce_client_configuration import BceClientConfiguration
    from baidubce.retry.retry_policy import NoRetryPolicy
    from baidubce.services.bcc.bcc_client import BccClient
    config = BceClientConfiguration(credentials=BceCredentials(AK, SK), endpoint="http://" + HOST)
    config.retry_policy = NoRetryPolicy()
    return BccClient(config)


def bcc_rule(remark):
    from baidubce.services.bcc.bcc_model import SecurityGroupRuleModel
    return SecurityGroupRuleModel(remark=remark, direction="ingress", ethertype="IPv4", portRange="22",
                                  protocol="tcp", sourceIp="10.0.0.0/8")


@check("bce SDK: authorize, 409 on duplicate, get detail, revoke by tuple, delete by id, 404 after")
def bce_cycle():
    group = "g-conformance"
    admin("POST", "/groups", {"provider": "baidu", "region": "bj", "id": group})
    client = bcc_client()
    client.authorize_security_group_rule(group, bcc_rule("web"), client_token="conformance-bce-1")
    client.authorize_security_group_rule(group, bcc_rule("web"), client_token="conformance-bce-1")
    expect_refused(lambda: client.authorize_security_group_rule(group, bcc_rule("web"),
                                                                client_token="conformance-bce-2"),
                   "SecurityGroup.RuleDuplicated", 409)
    detail = client.get_security_group_detail(group)
    rules = detail.rules
    expect(len(rules) == 1 and rules[0].port_range == "22", f"detail lists the rule: {rules}")
    expect_refused(lambda: client.revoke_security_group_rule(group, bcc_rule("other remark")),
                   "SecurityGroup.RuleNotExist", 404)
    client.revoke_security_group_rule(group, bcc_rule("web"), client_token="conformance-bce-3")
    expect(rules_of("baidu", group) == [], "revoke by tuple removed the rule")

    client.authorize_security_group_rule(group, bcc_rule("db"))
    rule_id = client.get_security_group_detail(group).rules[0].security_group_rule_id
    client.delete_security_group_rule(rule_id)
    expect(rules_of("baidu", group) == [], "delete by id removed the rule")
    expect_refused(lambda: client.delete_security_group_rule(rule_id), "NoSuchObject", 404)


@check("bce SDK: a request altered after signing is refused with SignatureDoesNotMatch")
def bce_tampered():
    from baidubce.http import bce_http_client
    original = bce_http_client._send_http_request

    def retarget_after_signing(conn, http_method, uri, headers, body, send_buf_size):
        return original(conn, http_method, uri.replace(b"g-conformance", b"g-elsewhere"),
                        headers, body, send_buf_size)

    admin("POST", "/groups", {"provider": "baidu", "region": "bj", "id": "g-elsewhere"})
    bce_http_client._send_http_request = retarget_after_signing
    try:
        expect_refused(lambda: bcc_client().get_security_group_detail("g-conformance"),
                       "SignatureDoesNotMatch", 400)
    finally:
        bce_http_client._send_http_request = original


def main():
    passed = failed = 0
    for name, fn in RESULTS:
        try:
            fn()
        except Exception as exc:
            failed += 1
            print(f"FAIL  {name}\n      {type(exc).__name__}: {exc}")
            traceback.print_exc(limit=3, file=sys.stdout)
        else:
            passed += 1
            print(f"ok    {name}")
    journal = calls()
    tokens = admin("GET", "/tokens")
    doubled = [t["clientToken"] for t in tokens if t["effects"] > 1]
    replays = sum(1 for c in journal if c["replayed"])
    refused = sum(1 for c in journal if c["code"] not in ("OK", "Dropped"))
    print(f"fake cloud saw {len(journal)} SDK calls: {sum(1 for c in journal if c['effect'])} with an effect, "
          f"{replays} answered by ClientToken replay, {refused} refused; "
          f"{len(tokens)} tokens, {len(doubled)} with more than one effect")
    if doubled:
        failed += 1
        print(f"FAIL  tokens acted on more than once: {doubled}")
    print(f"conformance: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
