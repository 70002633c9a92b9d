"""Every built-in connector passes the conformance kit at the strictest level."""

from __future__ import annotations

from connectors.douyin.harness import DouyinHarness
from connectors.jd.harness import JdHarness
from connectors.pos.harness import PosHarness
from connectors.testing import connector_suite
from connectors.tmall.harness import TmallHarness
from connectors.wechat.harness import WechatHarness
from connectors.youzan.harness import YouzanHarness

TestTmallConformance = connector_suite(TmallHarness(), strictness="strict")
TestJdConformance = connector_suite(JdHarness(), strictness="strict")
TestDouyinConformance = connector_suite(DouyinHarness(), strictness="strict")
TestYouzanConformance = connector_suite(YouzanHarness(), strictness="strict")
TestWechatConformance = connector_suite(WechatHarness(), strictness="strict")
TestPosConformance = connector_suite(PosHarness(), strictness="strict")
