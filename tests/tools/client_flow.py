"""README's flow (bind, GetCallNumber, query, release) through a client that
openapi-python-client generated from the served /openapi.json, using only its
typed methods and models: no casts, no parsing of the answers beyond what the
seed forces (the bound X is only in BindAxByplatform's ResultMsg).

Run by tests/api/contract_tools.rs: python client_flow.py BASE_URL TOKEN,
with the generated package `axn_client` on PYTHONPATH.
"""

import sys

from axn_client import AuthenticatedClient
from axn_client.api.a import get_call_number, query_agent_numbers, query_user_axs, release_tel_x
from axn_client.api.b import bind_ax_byplatform
from axn_client.models import (
    AgentNumber,
    BindAxByplatformAnswer,
    CallNumber,
    GetCallNumberAnswer,
    QueryAgentNumbersAnswer,
    QueryUserAxsAnswer,
    ReleaseTelXAnswer,
)

base_url, token = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

bound = bind_ax_byplatform.sync(client=client, user_id="51218", platform_id="3")
assert isinstance(bound, BindAxByplatformAnswer), bound
assert bound.result_code.value == 2000 and bound.data_body == [True], bound
x = bound.result_msg.removeprefix("小号分配成功:")

call = get_call_number.sync(
    client=client,
    xbid="1",
    userid="51218",
    mapclassid="1",
    mapid="123456",
    mobile="13700051234",
    expiration="30",
)
assert isinstance(call, GetCallNumberAnswer), call
assert call.result_code.value == 2000, call
first = call.data_body[0]
assert isinstance(first, CallNumber), first
assert first.phone == x and first.callback_id == 1, first

rows = query_agent_numbers.sync(client=client, userid="51218")
assert isinstance(rows, QueryAgentNumbersAnswer), rows
assert rows.data_count == 1, rows
row = rows.data_body[0]
assert isinstance(row, AgentNumber), row
assert row.ax_number == x and row.bind_state.value == "已绑定" and row.plateformid == 3, row
assert row.ax_num_a == "138****0001", row

axs = query_user_axs.sync(client=client, userid="51218")
assert isinstance(axs, QueryUserAxsAnswer), axs
# The AX number is the one to show while it is bound (bindType 0), the XB
# binding beside it notwithstanding (docs/platform-api.md, user_axs).
assert [(e.x_number, e.bind_type.value) for e in axs.data_body] == [(x, 0)], axs

released = release_tel_x.sync(client=client, user_id="51218", private_number=x)
assert isinstance(released, ReleaseTelXAnswer), released
assert released.result_code.value == 2000 and released.data_body == [x], released

again = query_agent_numbers.sync(client=client, userid="51218")
assert isinstance(again, QueryAgentNumbersAnswer) and again.data_body == [], again
print(f"client flow: bound, called, queried and released {x[:3]}****{x[-4:]}")
