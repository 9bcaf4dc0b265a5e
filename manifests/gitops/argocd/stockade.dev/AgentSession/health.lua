-- Argo CD health of a Stockade AgentSession (stockade.dev/v1alpha1).
-- Active: Healthy when Ready=True, else Progressing; Suspended: Suspended;
-- Failed or Stalled=True: Degraded; Succeeded: Healthy; Terminating: Progressing.
-- A status older than the spec (observedGeneration < generation) is Progressing.
local hs = { status = "Progressing", message = "Waiting for the Stockade operator" }

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(phase, status)
  local text = phase
  if status.reason ~= nil and status.reason ~= "" then
    text = text .. " (" .. status.reason .. ")"
  end
  if status.message ~= nil and status.message ~= "" then
    text = text .. ": " .. status.message
  end
  local agents = status.agents
  if agents ~= nil and agents.total ~= nil then
    local waiting = (agents.pending or 0) + (agents.starting or 0)
    text = text .. " [" .. tostring(agents.total) .. " agents: "
      .. tostring(agents.running or 0) .. " running, "
      .. tostring(waiting) .. " waiting, "
      .. tostring(agents.succeeded or 0) .. " succeeded, "
      .. tostring(agents.failed or 0) .. " failed]"
  end
  return text
end

local status = obj.status
if status == nil or status.phase == nil then
  return hs
end
local phase = status.phase
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")

if phase == "Terminating" then
  hs.status = "Progressing"
elseif phase == "Suspended" then
  hs.status = "Suspended"
elseif phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
elseif phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Active" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Progressing"
  end
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. phase
  return hs
end
hs.message = describe(phase, status)
return hs
