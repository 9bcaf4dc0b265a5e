-- Argo CD health of a Stockade Agent (stockade.dev/v1alpha1).
-- Running+Ready or Succeeded: Healthy; Pending, Starting, Terminating: Progressing;
-- Paused: Suspended; Failed or Stalled=True: Degraded. A status older than the spec
-- (observedGeneration < generation) is Progressing: the operator has not seen it yet.
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
  hs.message = describe(phase, status)
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = describe(phase, status)
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(phase, status)
elseif stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(phase, { reason = stalled.reason, message = stalled.message })
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = describe(phase, status)
elseif phase == "Running" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(phase, status)
elseif phase == "Pending" or phase == "Starting" then
  hs.status = "Progressing"
  hs.message = describe(phase, status)
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. phase
end
return hs
