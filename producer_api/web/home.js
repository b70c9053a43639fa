// The home view: the upload panel above the key's jobs.
import { renderUpload } from "./upload.js";
import { renderJobs } from "./jobs.js";

export async function renderHome(context) {
  const jobs = await renderJobs(context);
  const upload = await renderUpload(context, (accepted) => jobs.added(accepted.job_id));
  context.main.replaceChildren(upload, jobs.element);
}
