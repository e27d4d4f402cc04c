-- Argo CD health of a secgroup.dev SecurityGroupRule, read from its kstatus
-- conditions. Written for Argo CD's sandbox: Lua 5.1 (gopher-lua) with the
-- base and table libraries only, so no string functions.
--   Healthy      Ready=True for the current generation
--   Degraded     Stalled=True for the current generation; the message says why
--   Progressing  anything else: no status yet, a spec change not yet observed,
--                work in flight or being retried, a deletion still revoking
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }

if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local generation = obj.metadata.generation

-- A condition speaks for the spec it observed; an older one says nothing
-- about the current spec.
local function current(condition)
  local observed = condition.observedGeneration or obj.status.observedGeneration
  return generation == nil or observed == generation
end

local function text(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return condition.reason or condition.type
end

local found = {}
for _, condition in ipairs(obj.status.conditions) do
  found[condition.type] = condition
end
local ready, reconciling, stalled = found["Ready"], found["Reconciling"], found["Stalled"]

if stalled ~= nil and stalled.status == "True" and current(stalled) then
  hs.status = "Degraded"
  hs.message = text(stalled)
  return hs
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.message = "Revoking the rule before the object is deleted"
  return hs
end

if ready ~= nil and ready.status == "True" and current(ready) then
  hs.status = "Healthy"
  hs.message = text(ready)
  return hs
end

if reconciling ~= nil and reconciling.status == "True" and current(reconciling) then
  hs.message = text(reconciling)
elseif ready ~= nil and not current(ready) then
  hs.message = "Waiting for the operator to observe generation " .. generation
elseif ready ~= nil then
  hs.message = text(ready)
end
return hs
