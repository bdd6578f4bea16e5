// The accoil-sync backend this card calls. It must also be listed under permittedUrls in
// ../app-hsmeta.json: `npm run set-backend -- https://your-host` updates both.
export const BACKEND_URL = "https://accoil-sync.example.com";
