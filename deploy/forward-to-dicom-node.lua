-- Orthanc Lua script of deploy/compose.yaml: every instance Orthanc stores is sent on to
-- the DICOM modality "dicom-node" (deploy/orthanc.compose.json), except what the node
-- itself sent (its results, calling AE title DICOM_NODE), so results never loop back.
-- One C-STORE association per instance: fine for trying out; a busy PACS forwards per
-- study instead (OnStableStudy) or uses its own routing rules.

NODE_MODALITY = 'dicom-node'
NODE_AET = 'DICOM_NODE'

function OnStoredInstance(instanceId, tags, metadata, origin)
  if origin['RequestOrigin'] == 'DicomProtocol' and origin['RemoteAet'] == NODE_AET then
    return
  end
  if origin['RequestOrigin'] == 'Lua' then
    return
  end
  SendToModality(instanceId, NODE_MODALITY)
end
